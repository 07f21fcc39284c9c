"""Owner tracking: tasks bound to a QObject are cancelled and silenced when it dies.

One :class:`OwnerRecord` per owner QObject per manager.  The record, not the QObject, is
what tasks hold, so a task never keeps a widget alive.  The ``destroyed`` handler runs
inside the QObject's destructor, possibly during garbage collection on any thread that
holds no lock or holds one of ours, so it takes no lock: it flips ``alive`` (which every
delivery checks) and posts the actual cancellation to the GUI thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject

if TYPE_CHECKING:
    from ._task import TaskHandle

__all__ = ("OwnerRecord", "check_owner")


class OwnerRecord:
    """Liveness of one owner QObject and the live tasks bound to it."""

    __slots__ = ("__weakref__", "_on_dead", "_ref", "alive", "tasks")

    def __init__(self, owner: QObject, on_dead: Callable[[OwnerRecord], None]) -> None:
        self.alive = True
        self.tasks: set[TaskHandle[Any]] = set()
        self._ref = weakref.ref(owner)
        self._on_dead = on_dead
        owner.destroyed.connect(self._destroyed)

    def get(self) -> QObject | None:
        """Return the owner if it is still alive, else None."""
        if not self.alive:
            return None
        owner = self._ref()
        if owner is None or not shiboken6.isValid(owner):
            return None
        return owner

    def _destroyed(self, *_: object) -> None:
        # Lock-free on purpose (see the module docstring).
        self.alive = False
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
