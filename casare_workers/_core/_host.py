"""What a task needs from the pool it runs on and from the manager that submitted it.

Two small protocols, so that the core depends on no pool and no manager: the pools
and the manager implement them (``casare_workers._pools``, ``casare_workers._manager``).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ._state import TaskState

__all__ = ("PoolSlot", "TaskHost")


class PoolSlot(Protocol):
    """A task's view of its pool.  Every method is thread-safe.

    The task makes its terminal transition under the pool's ``lock`` and counts it
    there, so that ``submitted == queued + running + succeeded + failed + cancelled``
    holds at every moment.
    """

    name: str
    lock: threading.Lock

    @property
    def timeout_fate(self) -> str | None:
        """What happens to work that outlives its timeout (None: a thread keeps running)."""

    def count_started(self) -> None:
        """A queued task started running (called with ``lock`` held)."""

    def count_settled(self, previous: TaskState, state: TaskState) -> None:
        """One terminal transition (called with ``lock`` held)."""

    def on_cancel(self, task: Any, was_running: bool) -> None:
        """``task`` was cancelled (queued or running): stop its work if the pool can."""

    def wait_from_worker(self, task: Any, event: threading.Event) -> bool | None:
        """A blocking wait for ``task`` with no timeout: refuse it if it would deadlock.

        Returns None when the caller is not one of this pool's workers (wait normally).
        """


class TaskHost(Protocol):
    """What a task tells the manager that submitted it (the manager implements it).

    ``task`` is the ``TaskHandle`` (typed loosely: the core knows no manager).
    """

    @property
    def wants_started(self) -> bool:
        """True if something listens to the manager's ``task_started``."""

    def task_started(self, task: Any) -> None:
        """``task`` started: emit the manager's ``task_started`` (GUI thread)."""

    def task_delivered(self, task: Any) -> None:
        """``task``'s outcome was delivered: forget it, update ``busy`` (GUI thread)."""

    def watch_timeout(self, task: Any, seconds: float) -> None:
        """Call ``task.time_out()`` after ``seconds`` unless it ended (any thread)."""
