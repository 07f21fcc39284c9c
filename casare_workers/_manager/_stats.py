"""What a manager reports about itself: frozen snapshots, and the jobs it tracks.

``WorkerManager.statistics()`` returns a :class:`ManagerStatistics`: one
``PoolStatistics`` per pool (with its throughput over the last
``THROUGHPUT_WINDOW`` seconds) and the long jobs' :class:`JobStatistics`.
``WorkerManager.shutdown()`` returns a :class:`ShutdownReport`.

The manager knows no long job: the jobs package sits above it and implements
:class:`JobTracker`; until the first job starts, a manager's tracker is a
:class:`NoJobs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .._pools._statistics import PoolStatistics

__all__ = (
    "STATISTICS_INTERVAL_MS",
    "THROUGHPUT_WINDOW",
    "JobStatistics",
    "JobTracker",
    "ManagerStatistics",
    "NoJobs",
    "ShutdownReport",
    "with_throughput",
)

#: How often (at most) statistics_changed is emitted.
STATISTICS_INTERVAL_MS = 100
#: Window over which throughput is measured.
THROUGHPUT_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class JobStatistics:
    """A snapshot of a manager's long jobs (``manager.statistics().jobs``).

    Attributes:
        live: Jobs started and not yet delivered (their thread may still be running).
        running: Jobs whose work is executing now.
        paused: Running jobs asked to pause (they wait at their next checkpoint).
        started: Jobs ever started.
        succeeded: Jobs that ended with a result.
        failed: Jobs that ended with an exception.
        cancelled: Jobs cancelled, superseded, orphaned or shut down.
    """

    live: int = 0
    running: int = 0
    paused: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class JobTracker(Protocol):
    """What the manager asks of the long jobs it tracks.

    The manager knows no long job: ``casare_workers._jobs`` sits above it and implements
    this (its ``JobRegistry``), installed as the manager core's ``jobs`` by the first
    job started with the manager (until then, :class:`NoJobs`).
    """

    @property
    def live(self) -> int:
        """Jobs started and not yet delivered."""

    def live_jobs(self) -> list[Any]:
        """The live jobs (``LongJob``), oldest first."""

    def cancel_all(self, reason: str) -> int:
        """Ask every live job to stop; return how many had not ended."""

    def join(self, deadline: float) -> tuple[str, ...]:
        """Wait for the jobs' threads until ``deadline``; the names of those still running."""

    def statistics(self) -> JobStatistics:
        """A consistent snapshot of the counters."""


class NoJobs:
    """The :class:`JobTracker` of a manager that has not started a long job yet."""

    live = 0

    def live_jobs(self) -> list[Any]:
        return []

    def cancel_all(self, reason: str) -> int:
        return 0

    def join(self, deadline: float) -> tuple[str, ...]:
        return ()

    def statistics(self) -> JobStatistics:
        return JobStatistics()


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A frozen snapshot of every pool of a manager.

    Attributes:
        pools: Pool name to :class:`PoolStatistics`.
        live_tasks: Tasks submitted and not yet delivered to the GUI thread.
        busy: True while any task or long job is live.
        jobs: The long jobs' counters (:class:`JobStatistics`).
    """

    pools: dict[str, PoolStatistics]
    live_tasks: int
    busy: bool
    jobs: JobStatistics = field(default_factory=JobStatistics)

    def __getitem__(self, pool: str) -> PoolStatistics:
        return self.pools[pool]


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What ``WorkerManager.shutdown`` did.

    Attributes:
        cancelled: Tasks cancelled by the shutdown (queued or running).
        still_running: Names of functions still executing when the timeout passed.  Their
            threads are daemon threads: they do not hold the process's exit.
        elapsed: Seconds the shutdown took.
    """

    cancelled: int
    still_running: tuple[str, ...]
    elapsed: float

    @property
    def clean(self) -> bool:
        """True if every worker thread stopped within the timeout."""
        return not self.still_running


def with_throughput(stats: PoolStatistics, throughput: float) -> PoolStatistics:
    """``stats`` with its ``throughput`` (tasks per second, rounded, never negative)."""
    return replace(stats, throughput=round(max(0.0, throughput), 1))
