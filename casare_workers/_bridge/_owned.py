"""The asyncio tasks that belong to a QObject: cancelled when it is destroyed or closed.

Async slots and task groups with an owner register their tasks here.  An owner's
record learns of its end by two paths: the ``destroyed`` signal (connected directly:
it runs inside the destructor, on any thread) and the owner's window closing
(``casare_workers._closing``); either cancels every task in it, each on its own loop.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt

from .._closing import watch_window
from ._loops import cancel_task

__all__ = ("OwnerTasks", "loose_tasks", "tasks_of")


class OwnerTasks:
    """The asyncio tasks started for one owner QObject (async slots, task groups).

    Learns of the owner's death as ``_owners.OwnerRecord`` does, by two paths: the
    ``destroyed`` signal connected directly (it runs inside the destructor on any
    thread, takes no lock; cancelling a task from another thread goes through its loop),
    and a validity check of the owner each time a task is added.
    """

    __slots__ = ("__weakref__", "_alive", "_ref", "key", "tasks")

    def __init__(self, key: int, owner: QObject) -> None:
        self._alive = True
        self._ref = weakref.ref(owner)
        self.key = key
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def alive(self) -> bool:
        if not self._alive:
            return False
        owner = self._ref()
        if owner is None or not shiboken6.isValid(owner):
            self._destroyed()
            return False
        return True

    def add(self, task: asyncio.Task[Any]) -> None:
        if not self.alive:
            cancel_task(task, "cancelled: its owner was destroyed")
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel_all(self, reason: str) -> None:
        for task in list(self.tasks):
            cancel_task(task, f"cancelled: {reason}")

    def window_closed(self, reason: str) -> None:
        """The owner's window was closed (``_closing``).  GUI thread."""
        self.cancel_all(reason)

    def _destroyed(self, *_: object) -> None:
        self._alive = False
        if _owner_tasks.get(self.key) is self:
            del _owner_tasks[self.key]
        self.cancel_all("its owner was destroyed")


_owner_tasks: dict[int, OwnerTasks] = {}


def tasks_of(owner: QObject) -> OwnerTasks:
    """The task record of ``owner``, created (and wired to its lifetime) on first use."""
    key = shiboken6.getCppPointer(owner)[0]
    record = _owner_tasks.get(key)
    if record is None or not record.alive:  # a dead object's address, reused
        record = OwnerTasks(key, owner)
        _owner_tasks[key] = record
        owner.destroyed.connect(record._destroyed, Qt.ConnectionType.DirectConnection)
        watch_window(owner, record)  # a widget's tasks also end when its window closes
    return record


# Tasks of async slots without an owner: asyncio keeps only weak references to tasks,
# so an unreferenced fire-and-forget task could be garbage-collected while it runs.
loose_tasks: set[asyncio.Task[Any]] = set()
