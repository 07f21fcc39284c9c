"""``@async_slot``: an ``async def`` method as a Qt slot; its tasks end with its owner.

Each call starts the coroutine as a task on the running loop (from a thread with no
loop: on the GUI loop) and returns it; on a QObject's method the task belongs to the
object (``_owned``).  A failure goes to ``sys.excepthook`` or the ``on_error`` hook,
never nowhere.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, cast, overload

import shiboken6
from PySide6.QtCore import QObject, Slot

from .._core._call import name_of
from .._engine import get_engine
from .._errors import NoEventLoopError
from .._report import report_callback_exception
from ._crossloop import run_in_loop
from ._loops import running_loop
from ._owned import loose_tasks, tasks_of

__all__ = ("ExcInfoHook", "async_slot")

logger = logging.getLogger("casare_workers")

T = TypeVar("T")

ExcInfoHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def _positional_capacity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` accepts (None: any number)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for param in params:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


def _is_method(fn: Callable[..., Any]) -> bool:
    try:
        first = next(iter(inspect.signature(fn).parameters), None)
    except (TypeError, ValueError):
        return False
    return first == "self"


def _report_slot_outcome(name: str, on_error: ExcInfoHook | None, task: asyncio.Task[Any]) -> None:
    """Done callback of an async slot's task (runs on its loop's thread)."""
    if task.cancelled():
        logger.debug("async slot %s was cancelled", name)
        return
    exc = task.exception()
    if exc is None:
        return
    hook: ExcInfoHook = on_error if on_error is not None else sys.excepthook
    try:
        hook(type(exc), exc, exc.__traceback__)
    except BaseException as hook_exc:
        report_callback_exception(f"the error hook of async slot {name}", hook_exc)
        report_callback_exception(f"async slot {name}", exc)


def _start_slot(
    fn: Callable[..., Coroutine[Any, Any, T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    owner: QObject | None,
    name: str,
    on_error: ExcInfoHook | None,
) -> asyncio.Task[T]:
    """Create the slot's task on the running loop of this thread."""
    loop = running_loop(f"async slot {name}")
    task = loop.create_task(fn(*args, **kwargs), name=f"async slot {name}")
    task.add_done_callback(functools.partial(_report_slot_outcome, name, on_error))
    if owner is not None:
        if shiboken6.isValid(owner):
            tasks_of(owner).add(task)
        else:
            task.cancel("cancelled: its owner was destroyed")
    else:
        loose_tasks.add(task)
        task.add_done_callback(loose_tasks.discard)
    return task


def _decorate_slot(
    fn: Callable[..., Coroutine[Any, Any, T]],
    slot_types: tuple[Any, ...],
    on_error: ExcInfoHook | None,
) -> Callable[..., asyncio.Task[T]]:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"@async_slot decorates an 'async def' function; {name_of(fn)} is not one "
            "(plain functions can be connected to signals directly)"
        )
    capacity = _positional_capacity(fn)
    method = _is_method(fn)
    name = name_of(fn)

    @functools.wraps(fn)
    def slot(*args: Any, **kwargs: Any) -> Any:
        # Qt drops trailing signal arguments a slot does not take (clicked(bool) into
        # "async def on_click(self)"); do the same.
        if capacity is not None and len(args) > capacity:
            args = args[:capacity]
        owner = args[0] if method and args and isinstance(args[0], QObject) else None
        if asyncio._get_running_loop() is not None:
            return _start_slot(fn, args, kwargs, owner, name, on_error)
        if get_engine().is_gui_thread():
            raise NoEventLoopError(
                f"async slot {name} was called while no asyncio loop runs: start the "
                "qasync loop first (asyncio.run(main(), loop_factory=qasync.QEventLoop))"
            )
        # Called from a worker thread: start the task on the GUI loop.
        return run_in_loop(functools.partial(_start_slot, fn, args, kwargs, owner, name, on_error))

    if slot_types:
        return cast(Callable[..., "asyncio.Task[T]"], Slot(*slot_types)(slot))
    return slot


@overload
def async_slot(fn: Callable[..., Coroutine[Any, Any, T]], /) -> Callable[..., asyncio.Task[T]]: ...


@overload
def async_slot(
    *slot_types: Any, on_error: ExcInfoHook | None = None
) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], Callable[..., asyncio.Task[T]]]: ...


def async_slot(*slot_types: Any, on_error: ExcInfoHook | None = None) -> Any:
    """Make an ``async def`` method usable as a Qt slot; it returns its asyncio task.

    Each call (a signal, or a direct call) starts the coroutine as a task on the
    running loop (the qasync loop on the GUI thread) and returns the task, which can be
    awaited or cancelled.  Extra signal arguments the coroutine does not take are
    dropped, as Qt does for slots.

    On a method of a QObject, the tasks belong to that object: they are cancelled when
    it is destroyed, and, for a widget, when its window is closed (an accepted close
    event, or a dialog's ``finished``).  No fire-and-forget task outlives its dialog.

    A task that ends cancelled is not an error (logged at debug level).  Any other
    exception goes to ``on_error(type, value, traceback)``, by default
    ``sys.excepthook`` (looked up at the time, so pytest-qt and app-wide hooks see it):
    never swallowed.

    Called from a thread with no running loop, the task is started on the GUI loop and
    a ``concurrent.futures.Future`` of the task's result is returned instead.

    Args:
        *slot_types: Optional Qt argument types, applied as ``@Slot(*slot_types)``.
        on_error: The hook for exceptions (default ``sys.excepthook``).

    Raises:
        TypeError: The decorated function is not an ``async def`` function.
        NoEventLoopError: Called while no asyncio loop runs.

    Example:
        >>> class Login(QDialog):                                 # doctest: +SKIP
        ...     @async_slot
        ...     async def on_submit(self):
        ...         self.status.setText("signing in...")
        ...         token = await self.manager.submit(oauth_flow, self.user.text())
        ...         self.accept()
        >>> dialog.button.clicked.connect(dialog.on_submit)      # doctest: +SKIP
    """
    if len(slot_types) == 1 and callable(slot_types[0]) and not isinstance(slot_types[0], type):
        return _decorate_slot(slot_types[0], (), on_error)  # bare @async_slot
    for kind in slot_types:
        if inspect.iscoroutinefunction(kind) or (callable(kind) and not isinstance(kind, type)):
            raise TypeError(
                "use @async_slot or @async_slot(*qt_types, on_error=hook); "
                f"{kind!r} is not a Qt argument type"
            )

    def decorate(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., asyncio.Task[T]]:
        return _decorate_slot(fn, slot_types, on_error)

    return decorate
