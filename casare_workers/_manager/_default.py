"""The application's default manager: ``default_manager()``, ``set_default_manager()``.

The slot itself (:class:`~casare_workers._manager._lifecycle.DefaultSlot`) sits below
the facade, so that a new ``WorkerManager(default=True)`` can adopt itself; these
functions sit above it, since ``default_manager()`` may have to create one.
"""

from __future__ import annotations

from ._facade import DEFAULT_MANAGER, WorkerManager

__all__ = ("default_manager", "set_default_manager")


def default_manager() -> WorkerManager:
    """Return the application's manager: the first ``WorkerManager`` it created.

    ``LongJob``, ``SubprocessJob``, ``asyncify``, ``attach_loop`` and ``TaskGroup`` use it
    when no ``manager=`` is given, so an application that creates one manager (the
    usual case) has exactly one, whichever API it uses: one set of bounded pools, one
    place to watch them and to shut them down.

    The first ``WorkerManager`` created while there is no open default becomes the
    default (unless created with ``default=False``); if there is none, this creates one
    on first use (on the GUI thread).  A default that was shut down or destroyed is
    replaced the same way.  Libraries should accept a manager rather than reach for
    this.
    """
    return DEFAULT_MANAGER.get(_new_manager)


def set_default_manager(manager: WorkerManager | None) -> None:
    """Replace (or clear, with None) the application's default manager."""
    DEFAULT_MANAGER.set(manager)


def _new_manager() -> WorkerManager:
    # Not the default by itself: the slot holds it (strongly) once it is made.
    return WorkerManager(default=False)
