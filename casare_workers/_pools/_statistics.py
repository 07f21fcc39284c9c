"""``PoolStatistics``: a consistent snapshot of one pool's counters (every kind of pool)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("PoolStatistics",)


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A consistent snapshot of one pool's counters.

    ``submitted == queued + running + succeeded + failed + cancelled`` always holds.

    Attributes:
        name: The pool's name.
        kind: ``"thread"`` (or the kind of another backend).
        max_workers: The bound on workers running at once.
        workers: Threads alive now (idle ones exit after ``idle_timeout``).
        busy: Workers executing a function now.
        abandoned: Workers still executing a function whose task already ended
            (cancelled or timed out while running; Python threads cannot be killed).
        queued: Tasks waiting for a worker.
        running: Tasks running now.
        submitted: Tasks ever submitted.
        succeeded: Tasks that ended with a result.
        failed: Tasks that ended with an exception (including timeouts).
        cancelled: Tasks cancelled, superseded or shut down.
        throughput: Tasks ended per second over the last few seconds.
        restarts: Worker processes replaced after a crash or a kill (process pools;
            always 0 for threads).
    """

    name: str
    kind: str
    max_workers: int
    workers: int
    busy: int
    abandoned: int
    queued: int
    running: int
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    throughput: float = 0.0
    restarts: int = 0

    @property
    def finished(self) -> int:
        """Tasks that ended in any way."""
        return self.succeeded + self.failed + self.cancelled
