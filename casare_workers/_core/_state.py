"""``TaskState``: where a task is in its life (shared by tasks, pools and jobs)."""

from __future__ import annotations

import enum

__all__ = ("TaskState",)


class TaskState(enum.Enum):
    """Where a task is in its life."""

    PENDING = "pending"
    """Created (a ``Worker``) but not started yet; or just submitted to a thread pool
    whose every thread was busy, until the pool's next bookkeeping step queues it
    (usually microseconds; at the latest when a thread comes back for work, or when
    ``statistics()`` or a shutdown looks at the queue)."""
    QUEUED = "queued"
    """Waiting in a pool for a free worker."""
    RUNNING = "running"
    """A worker thread is running the function."""
    SUCCEEDED = "succeeded"
    """Ended with a result."""
    FAILED = "failed"
    """Ended with an exception (including ``TaskTimeoutError``)."""
    CANCELLED = "cancelled"
    """Cancelled, superseded by a newer task with the same key, or shut down."""

    @property
    def is_terminal(self) -> bool:
        """True for ``SUCCEEDED``, ``FAILED`` and ``CANCELLED``."""
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
