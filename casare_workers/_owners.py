"""Owner tracking: tasks bound to a QObject are cancelled and silenced when it dies.

One :class:`OwnerRecord` per owner QObject per manager.  The record, not the QObject, is
what tasks hold, so a task never keeps a widget alive.

How a record learns that its owner died, by two independent paths:

1. The owner's ``destroyed`` signal, connected with ``Qt.DirectConnection``: the handler
   runs inside the destructor, on whichever thread destroys the object (the cyclic GC on
   a worker thread, ``shiboken6.delete`` from a thread).  An automatic connection would
   be *queued* when that thread is not the owner's, as an event posted to the dying
   object itself, and Qt discards an object's posted events when it is destroyed: the
   death would never be noticed.  The handler takes no lock (a destructor may run during
   garbage collection on a thread that holds one of ours): it flips ``alive`` and posts
   the cancellation of the owner's tasks to the GUI thread.
2. Every read of :attr:`OwnerRecord.alive` also checks the owner itself: its Python
   wrapper gone (for an object Python owned), or the wrapper invalid (the C++ object
   deleted).  So even a death whose signal never ran is seen by the next delivery, the
   next ``ctx.cancelled``, the next task start, and a new object that happens to get the
   dead one's address never inherits its record.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Protocol

import shiboken6
from PySide6.QtCore import QObject

__all__ = ("Cancellable", "OwnerRecord", "check_owner")


class Cancellable(Protocol):
    """What an owner's record holds: work that its owner's death cancels (a task, a job)."""

    def cancel(self, *, reason: str = ...) -> bool:
        """Ask the work to stop; True if this call did."""


class OwnerRecord:
    """Liveness of one owner QObject and the live tasks (and long jobs) bound to it."""

    __slots__ = ("__weakref__", "_alive", "_keep", "_on_dead", "_ref", "tasks")

    def __init__(self, owner: QObject, on_dead: Callable[[OwnerRecord], None]) -> None:
        self._alive = True
        self.tasks: set[Cancellable] = set()
        self._ref = weakref.ref(owner)
        # A wrapper of an object C++ owns (a child widget) may be dropped by Python while
        # the object lives on: keep it, so that its validity can still be read.  Holding
        # it does not keep the C++ object alive (its parent decides); holding the wrapper
        # of an object Python owns would, so that one is held weakly.
        self._keep: QObject | None = None if shiboken6.ownedByPython(owner) else owner
        self._on_dead = on_dead
        from PySide6.QtCore import Qt  # on use: see casare_workers._signals

        owner.destroyed.connect(self._destroyed, Qt.ConnectionType.DirectConnection)

    @property
    def alive(self) -> bool:
        """True while the owner exists.  Any thread; cheap (a flag and a validity check)."""
        if not self._alive:
            return False
        owner = self._ref()
        if owner is not None and shiboken6.isValid(owner):
            return True
        self._died()  # the second path: dead although no destroyed signal was seen
        return False

    def get(self) -> QObject | None:
        """Return the owner if it is still alive, else None."""
        if not self.alive:
            return None
        return self._ref()

    def _destroyed(self, *_: object) -> None:
        # Runs inside the owner's destructor, on any thread.  Lock-free on purpose.
        self._died()

    def _died(self) -> None:
        if self._alive:
            self._alive = False
            self._keep = None
            self._on_dead(self)


def check_owner(owner: object) -> QObject:
    """Validate an ``owner=`` option: a live QObject, or a clear TypeError/ValueError."""
    if not isinstance(owner, QObject):
        raise TypeError(
            f"owner must be a QObject (usually the widget that shows the result), "
            f"got {type(owner).__name__}; pass owner=self from a widget, or omit it"
        )
    if not shiboken6.isValid(owner):
        raise ValueError(
            "owner has already been destroyed (its C++ object was deleted); "
            "submit from a live widget or omit owner"
        )
    return owner
