"""``TaskBook``: what a manager has in flight, by owner and by key.

The lowest layer of the manager's core (``TaskBook`` ─► ``Hosting`` ─► ``ManagerCore``)::

    live     task id ─► TaskHandle        every task submitted and not yet delivered
    keys     (owner record, key) ─► task  the one task in flight per key and owner
    owned    task id ─► (record, key)     to forget a task's key and owner entry
    owners   C++ address ─► OwnerRecord   one record per live owner (options(owner=))
    closers  record ─► OwnerCloser        its window-close listener (held here)
    jobs     the long jobs (a JobTracker the jobs package installs)
    watchers deques fed every new task and job (item models drain them)

An owner's end cancels its work on two paths: its destruction (the record's callback,
then the GUI thread) and its window closing (``_closing`` calls the ``OwnerCloser``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Hashable
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject

from .._closing import watch_window
from .._core._handle import TaskHandle
from .._engine import DeliveryEngine
from .._owners import OwnerRecord
from ._stats import JobTracker, NoJobs

__all__ = ("OwnerCloser", "TaskBook")


class OwnerCloser:
    """Cancels an owner's tasks and long jobs when its window is closed (``_closing``)."""

    __slots__ = ("__weakref__", "_book", "_record")

    def __init__(self, book: TaskBook, record: OwnerRecord) -> None:
        self._book = weakref.ref(book)  # no cycle: the book holds this object
        self._record = record

    def window_closed(self, reason: str) -> None:
        """Runs on the GUI thread."""
        book = self._book()
        if book is None:
            return
        with book.lock:
            tasks = list(self._record.tasks)
        for task in tasks:
            task.cancel(reason="window closed")


class TaskBook:
    """The tasks and long jobs a manager has in flight, and their owners' records.

    Args:
        engine: Where an owner's death is handled (posted to the GUI thread).
    """

    def __init__(self, engine: DeliveryEngine) -> None:
        self.engine = engine
        self.lock = threading.RLock()
        self.live: dict[int, TaskHandle[Any]] = {}
        self.keys: dict[tuple[OwnerRecord | None, Hashable], TaskHandle[Any]] = {}
        #: The owner record and key of every live task submitted with either.
        self.owned: dict[int, tuple[OwnerRecord | None, Hashable | None]] = {}
        self.owners: dict[int, OwnerRecord] = {}
        # The window-close listener of each record (held here: _closing holds it weakly).
        self.closers: dict[OwnerRecord, OwnerCloser] = {}
        # Deques that receive every submitted task (item models drain them in batches).
        self.watchers: list[deque[Any]] = []  # TaskHandles and LongJobs
        #: The long jobs: every started LongJob, held until delivered.  The jobs package
        #: installs its registry here when the first job starts (see JobTracker).
        self.jobs: JobTracker = NoJobs()

    def owner_record(self, owner: QObject) -> OwnerRecord:
        """The record of ``owner`` (made on first use; its window closing ends its work)."""
        key = shiboken6.getCppPointer(owner)[0]
        with self.lock:
            record = self.owners.get(key)
            if record is not None and record.alive:
                return record
            record = OwnerRecord(owner, self._owner_died)
            self.owners[key] = record
            closer = self.closers[record] = OwnerCloser(self, record)
        # The other half of owner=: the owner's window closing ends its work too.
        watch_window(owner, closer)
        return record

    def in_flight(self, record: OwnerRecord | None, key: Hashable) -> TaskHandle[Any] | None:
        """The task queued or running under ``key`` (and owner ``record``), if any."""
        with self.lock:
            task = self.keys.get((record, key))
        if task is None or task.done():
            return None
        return task

    def forget(self, task: TaskHandle[Any]) -> None:
        """Drop ``task`` from the book (called with the lock held)."""
        self.live.pop(task.id, None)
        record, key = self.owned.pop(task.id, (None, None))
        if record is not None:
            record.tasks.discard(task)
        if key is not None:
            if self.keys.get((record, key)) is task:
                del self.keys[(record, key)]

    def live_tasks(self) -> list[TaskHandle[Any]]:
        """Tasks submitted and not yet delivered (a snapshot, oldest first)."""
        with self.lock:
            return list(self.live.values())

    def wait_idle(self, deadline: float) -> bool:
        """Wait until nothing is in flight or ``deadline`` (``time.monotonic``) passes.

        On the GUI thread it processes events (deliveries come through them); elsewhere
        it waits on the oldest live task.  Returns True if nothing is in flight.
        """
        gui = self.engine.is_gui_thread()
        while self.live or self.jobs.live:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if gui:
                QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
                self.engine.flush()
            else:
                live = self.live_tasks()
                if live:
                    live[0].wait(min(remaining, 0.05))
                elif self.jobs.live:
                    time.sleep(min(remaining, 0.01))  # jobs are delivered by the GUI thread
        return True

    def _owner_died(self, record: OwnerRecord) -> None:
        # Runs inside the owner's destructor: no locks here (see _owners).
        self.engine.post(lambda: self._cancel_owned(record))

    def _cancel_owned(self, record: OwnerRecord) -> None:
        with self.lock:
            tasks = list(record.tasks)
            for key, value in list(self.owners.items()):
                if value is record:
                    del self.owners[key]
            self.closers.pop(record, None)
        for task in tasks:
            task.cancel(reason="owner destroyed")
