"""``JobRegistry``: a manager's long jobs, held from ``start()`` until delivered.

The registry's strong reference is what keeps a job whose last user reference was
dropped (``self.worker = Job()`` on a second click) until its outcome has been
delivered on the GUI thread and its thread has ended.  It also keeps the supersede keys
(per owner: a new job with a job's key cancels it) and the counters behind
``manager.statistics().jobs``.  It is the manager's ``JobTracker`` (installed by the
first job started with that manager: :func:`registry_of`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any, Protocol

from .._core._state import TaskState
from .._manager import JobStatistics
from .._owners import OwnerRecord
from ._host import JobHost
from ._jobcore import JobCore

__all__ = ("JobRegistry", "TrackedJob", "registry_of")

_RUNNING = TaskState.RUNNING
_SUCCEEDED, _FAILED = TaskState.SUCCEEDED, TaskState.FAILED


class TrackedJob(Protocol):
    """A job as the registry sees it (``LongJob``)."""

    @property
    def name(self) -> str:
        """The job's display name."""

    def join_thread(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the job's thread; True if it has ended."""


def registry_of(host: JobHost) -> JobRegistry:
    """``host``'s job registry, installed as ``host.jobs`` on first use.  Any thread."""
    jobs = host.jobs
    if isinstance(jobs, JobRegistry):
        return jobs
    with host.lock:
        jobs = host.jobs
        if not isinstance(jobs, JobRegistry):
            jobs = host.jobs = JobRegistry(host)
    return jobs


class JobRegistry:
    """A manager's long jobs: strong references while live, supersede keys, statistics.

    A job is *live* from ``start()`` until its outcome has been delivered on the GUI
    thread and its thread has ended.
    """

    def __init__(self, host: JobHost) -> None:
        self._host = host
        self._lock = threading.Lock()
        self._live: dict[int, tuple[TrackedJob, JobCore]] = {}
        self._keys: dict[tuple[OwnerRecord | None, Hashable], JobCore] = {}
        self._started = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0

    @property
    def live(self) -> int:
        """How many jobs are live."""
        return len(self._live)

    def register(self, job: TrackedJob, core: JobCore) -> None:
        """Track a job being started; supersede the previous job with its key.  Any thread."""
        host = self._host
        record = core.owner_record
        superseded: JobCore | None = None
        with self._lock:
            self._live[core.id] = (job, core)
            self._started += 1
            core.registry = self
            if core.key is not None:
                slot = (record, core.key)
                superseded = self._keys.get(slot)
                self._keys[slot] = core
        if record is not None:
            with host.lock:
                # The manager cancels everything in record.tasks when the owner dies or
                # its window closes; the core answers cancel(reason=...) like a task.
                record.tasks.add(core)
        if superseded is not None:
            superseded.cancel(reason="superseded")
        for watcher in host.watchers:  # views refreshing in batches (TaskTableModel)
            watcher.append(job)
        if host.engine.is_gui_thread():
            host.update_busy()
        else:
            host.engine.post(host.update_busy)

    def count_settled(self, state: TaskState) -> None:
        """A job's outcome was decided (any thread)."""
        with self._lock:
            if state is _SUCCEEDED:
                self._succeeded += 1
            elif state is _FAILED:
                self._failed += 1
            else:
                self._cancelled += 1

    def release(self, core: JobCore) -> None:
        """Forget a delivered job whose thread has ended.  GUI thread."""
        host = self._host
        record = core.owner_record
        with self._lock:
            entry = self._live.pop(core.id, None)
            if core.key is not None:
                slot = (record, core.key)
                if self._keys.get(slot) is core:
                    del self._keys[slot]
        if record is not None:
            with host.lock:
                record.tasks.discard(core)
        if entry is None:
            return
        host.update_busy()
        del entry  # the registry's reference goes here, on the GUI thread

    def live_jobs(self) -> list[Any]:
        """A snapshot of the live jobs, oldest first."""
        with self._lock:
            return [job for job, _core in self._live.values()]

    def cancel_all(self, reason: str) -> int:
        """Ask every live job to stop; return how many had not ended."""
        with self._lock:
            cores = [core for _job, core in self._live.values()]
        return sum(core.cancel(reason=reason) for core in cores)

    def join(self, deadline: float) -> tuple[str, ...]:
        """Wait for the jobs' threads until ``time.monotonic()`` passes ``deadline``.

        On the GUI thread, jobs that ended are delivered now (their ``cancelled`` etc.
        is emitted before shutdown returns).  Returns the names of jobs still running;
        they stay parked (never destroyed) and keep their reference.
        """
        still: list[str] = []
        for job in self.live_jobs():
            if not job.join_thread(max(0.0, deadline - time.monotonic())):
                still.append(f"long job {job.name}")
        return tuple(still)

    def statistics(self) -> JobStatistics:
        """A consistent snapshot of the counters."""
        with self._lock:
            cores = [core for _job, core in self._live.values()]
            started, ok, failed, cancelled = (
                self._started,
                self._succeeded,
                self._failed,
                self._cancelled,
            )
        running = [core for core in cores if core.state is _RUNNING]
        paused = sum(1 for core in running if core.paused)
        return JobStatistics(len(cores), len(running), paused, started, ok, failed, cancelled)
