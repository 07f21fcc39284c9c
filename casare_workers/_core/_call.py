"""``Call``: what a task runs, and the rules for letting go of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import shiboken6
from PySide6.QtCore import QObject, QThread

__all__ = ("Call", "hand_over_to_gui", "holds_qobject", "name_of")


class Call(NamedTuple):
    """A frozen description of one call, as a pool ships or runs it.

    Attributes:
        fn: The function.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        mode: How the task context is passed (``casare_workers._introspect``: ``PLAIN``,
            ``WANTS_CTX`` or ``WANTS_PROGRESS_CALLBACK``).
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    mode: int


def name_of(fn: object) -> str:
    """A display name for ``fn``: its qualified name (through ``functools.partial``)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is not None:
            return name_of(inner)
        return type(fn).__name__
    return str(name)


def holds_qobject(fn: object, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> bool:
    """True if a QObject is the function's ``self`` or a top-level argument.

    The arguments of such a call are let go on the GUI thread (at delivery), never on a
    worker thread: the last reference to a QObject must not be dropped there.
    """
    if isinstance(getattr(fn, "__self__", None), QObject):
        return True
    if args:
        for arg in args:
            if isinstance(arg, QObject):
                return True
    if kwargs:
        for arg in kwargs.values():
            if isinstance(arg, QObject):
                return True
    return False


def hand_over_to_gui(value: QObject, gui: QThread, what: str) -> None:
    """Move a QObject result made on this (worker) thread to the GUI thread.  Worker thread.

    A QObject keeps the thread it was made on, which ends (or serves other work) once
    the result is delivered: its timers could not start, it could not be given a parent
    on the GUI thread.  ``moveToThread`` must be called from the object's own thread,
    so it happens here, right after the function returned.  Objects made elsewhere (the
    GUI thread) are left alone.  Only the result itself is moved: QObjects inside a
    container are not (return them one by one, or plain data).

    Raises:
        TypeError: It has a parent (a child cannot move without its parent).
    """
    if not shiboken6.isValid(value) or value.thread() != QThread.currentThread():
        return
    if value.parent() is not None or not value.moveToThread(gui):
        raise TypeError(
            f"{what} returned a {type(value).__name__} made on its worker thread that has "
            "a parent: a QObject can reach the GUI thread only by moving there, which a "
            "child cannot do without its parent.  Return the top-level object, or plain "
            "data, and build Qt objects on the GUI thread"
        )
