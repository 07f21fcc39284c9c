"""From any thread to an event loop, and synchronous code calling coroutines.

:func:`run_in_loop` sends a call or a coroutine to the GUI thread's loop (through the
delivery engine: one posted event per batch) or to another loop (through
``call_soon_threadsafe``) and returns a ``concurrent.futures.Future``;
:func:`run_coroutine_sync` blocks a worker thread on it.  Neither ever blocks a loop on
itself: that would deadlock, and a nested loop would re-enter code still on the stack,
so both refuse at once with :class:`BlockingCallError`::

    worker thread                            GUI thread (the loop's thread)
    -------------                            ------------------------------
    run_in_loop(coro) ─ engine.post ───────► _start_on_loop: loop.create_task(coro)
    future.result(timeout)  (blocks)                task ends ─► _copy_outcome
           ◄────────────────────────────────── future.set_result / set_exception
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, overload

from PySide6.QtCore import QThread

from .._engine import get_engine
from .._errors import BlockingCallError, NoEventLoopError
from ._loops import cancel_task, is_qt_loop, known_gui_loop, register_gui_loop

__all__ = ("run_coroutine_sync", "run_in_loop")

T = TypeVar("T")


class _LoopFuture(concurrent.futures.Future[T]):
    """A Future of work on an event loop that refuses to block that loop's own thread.

    ``run_coroutine_threadsafe(coro, loop).result()`` on the loop's thread deadlocks
    (the loop cannot run the coroutine while it waits); with a timeout it freezes the
    window for the whole timeout and then fails.  This one raises at once instead.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        super().__init__()
        self._loop = loop  # None: the GUI thread's loop

    def _check_blocking(self, method: str) -> None:
        if self.done():
            return
        loop = self._loop
        if loop is None or is_qt_loop(loop):
            own = get_engine().is_gui_thread()
        else:
            own = asyncio._get_running_loop() is loop
        if own:
            raise BlockingCallError(
                f"Future.{method}() on the thread of the event loop that must produce it "
                "would deadlock (the loop cannot run while it waits) and freeze the "
                "window: in a coroutine, 'await asyncio.wrap_future(future)' or await "
                "the coroutine directly; in a plain function, use "
                "future.add_done_callback(...)"
            )

    def result(self, timeout: float | None = None) -> T:
        """Like ``Future.result``, but raise BlockingCallError instead of deadlocking."""
        self._check_blocking("result")
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Like ``Future.exception``, but raise BlockingCallError instead of deadlocking."""
        self._check_blocking("exception")
        return super().exception(timeout)


def _copy_outcome(source: asyncio.Future[T], target: concurrent.futures.Future[T]) -> None:
    # Runs on the loop's thread when the loop-side task ends.
    if source.cancelled():
        target.cancel()
    if not target.set_running_or_notify_cancel():
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _fail(target: concurrent.futures.Future[Any], exc: BaseException) -> None:
    if target.set_running_or_notify_cancel():
        target.set_exception(exc)


def _start_on_loop(
    loop: asyncio.AbstractEventLoop | None,
    target: _LoopFuture[Any],
    fn: Callable[..., Any] | None,
    coro: Coroutine[Any, Any, Any] | None,
    args: tuple[Any, ...],
) -> None:
    """Start the call; runs on the loop's thread, in the caller's contextvars.

    For the GUI loop it runs in the delivery engine's drain.
    """
    if loop is None:  # the GUI thread's loop: whichever runs here now
        loop = asyncio._get_running_loop() or known_gui_loop()
        if loop is not None and is_qt_loop(loop):
            register_gui_loop(loop)
    if target.cancelled() or (loop is None and coro is not None):
        if coro is not None:
            coro.close()  # never started: no "coroutine was never awaited" warning
            if not target.cancelled():
                _fail(target, NoEventLoopError(_NO_GUI_LOOP))
        return
    try:
        if fn is not None:
            value = fn(*args)
            if not inspect.isawaitable(value):
                if target.set_running_or_notify_cancel():
                    target.set_result(value)
                return
            if loop is None:
                raise NoEventLoopError(_NO_GUI_LOOP)
            task = asyncio.ensure_future(value, loop=loop)
        else:
            assert coro is not None
            assert loop is not None
            task = loop.create_task(coro)
    except BaseException as exc:
        _fail(target, exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return
    task.add_done_callback(functools.partial(_copy_outcome, target=target))

    def cancel_loop_task(done: concurrent.futures.Future[Any]) -> None:
        # Runs on whichever thread cancelled the Future.
        if done.cancelled():
            cancel_task(task, "cancelled: its concurrent.futures.Future was cancelled")

    target.add_done_callback(cancel_loop_task)


_NO_GUI_LOOP = (
    "no asyncio loop runs on the GUI thread: start the qasync loop "
    "(asyncio.run(main(), loop_factory=qasync.QEventLoop), or "
    "loop = qasync.QEventLoop(app); loop.run_forever()); attach_loop(loop, manager) "
    "makes it known before it runs"
)


@overload
def run_in_loop(
    fn: Coroutine[Any, Any, T], /, *, loop: asyncio.AbstractEventLoop | None = None
) -> concurrent.futures.Future[T]: ...


@overload
def run_in_loop(
    fn: Callable[..., Coroutine[Any, Any, T]],
    /,
    *args: Any,
    loop: asyncio.AbstractEventLoop | None = None,
) -> concurrent.futures.Future[T]: ...


@overload
def run_in_loop(
    fn: Callable[..., T], /, *args: Any, loop: asyncio.AbstractEventLoop | None = None
) -> concurrent.futures.Future[T]: ...


def run_in_loop(
    fn: Any, /, *args: Any, loop: asyncio.AbstractEventLoop | None = None
) -> concurrent.futures.Future[Any]:
    """Run a function or a coroutine on the GUI loop from any thread; return a Future.

    ``fn`` is a coroutine object, or a callable called as ``fn(*args)`` on the loop's
    thread (if it returns an awaitable, that is awaited too; use ``functools.partial``
    for keyword arguments).  Works from QThreads, ``concurrent.futures`` threads and
    plain threads alike: no event loop is needed in the calling thread (unlike
    ``QTimer.singleShot(0, fn)``).  Never blocks; the caller's contextvars travel with
    the call.  The GUI loop is reached through the delivery engine (one posted event
    per batch), another ``loop`` through ``call_soon_threadsafe``.

    Block for the outcome with ``future.result(timeout)`` from a worker thread.  On
    the loop's own thread ``result()``/``exception()`` raise :class:`BlockingCallError`
    at once instead of deadlocking; cancelling the Future cancels the coroutine.

    Args:
        fn: A coroutine object, or a callable.
        *args: Positional arguments for the callable.
        loop: The target loop (default: the loop running on the GUI thread).

    Returns:
        A ``concurrent.futures.Future`` of the outcome.  It fails with
        :class:`NoEventLoopError` if a coroutine is sent to the GUI thread while no
        asyncio loop runs there.

    Raises:
        NoEventLoopError: ``loop`` is closed.
        TypeError: Arguments were given with a coroutine object, or ``fn`` is neither.

    Example:
        >>> def fetch(ctx):                                    # a worker thread
        ...     token = run_in_loop(oauth.refresh()).result(30)  # doctest: +SKIP
        ...     run_in_loop(status_bar.showMessage, "refreshed")  # doctest: +SKIP
    """
    coro: Coroutine[Any, Any, Any] | None = None
    call: Callable[..., Any] | None = None
    if asyncio.iscoroutine(fn):
        if args:
            fn.close()
            raise TypeError("run_in_loop(coroutine) takes no arguments: they are in the coroutine")
        coro = fn
    elif callable(fn):
        call = fn
    else:
        raise TypeError(
            f"run_in_loop() takes a coroutine object or a callable, got {type(fn).__name__}"
        )
    future: _LoopFuture[Any] = _LoopFuture(loop)
    start = functools.partial(
        contextvars.copy_context().run, _start_on_loop, loop, future, call, coro, args
    )
    if loop is None:
        get_engine().post(start)
        return future
    try:
        if loop.is_closed():
            raise RuntimeError("closed")
        loop.call_soon_threadsafe(start)
    except RuntimeError:
        if coro is not None:
            coro.close()
        raise NoEventLoopError("run_in_loop(): the target event loop is closed") from None
    return future


def run_coroutine_sync(
    coro: Coroutine[Any, Any, T],
    timeout: float | None = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> T:
    """Run a coroutine to completion from synchronous code, on the right loop.

    For sync code that must call async code, without starting an event loop per call:

    * on a worker thread it runs the coroutine on the GUI loop (or ``loop``) and blocks
      up to ``timeout`` seconds; the coroutine's own exception arrives unchanged;
    * on a thread whose asyncio loop or Qt event loop is running (the GUI thread under
      qasync) it refuses at once with :class:`BlockingCallError`: blocking would freeze
      the window and deadlock, and a nested loop would re-enter code on the stack.
      ``await`` the coroutine instead (or make the caller an :func:`async_slot`);
    * with an event loop that is not running (start-up code), it runs the coroutine on
      that loop with ``run_until_complete``.

    Raises:
        BlockingCallError: Called where an event loop is running (see above), or on the
            GUI thread with no timeout while another thread's loop runs the coroutine.
        TimeoutError: ``timeout`` passed; the coroutine is cancelled.
        NoEventLoopError: No loop was given and none runs on the GUI thread.
        Exception: Whatever the coroutine raised, unchanged.

    Example:
        >>> def window_title(hwnd):      # sync API, called on a worker thread
        ...     return run_coroutine_sync(desktop.get_title(hwnd), timeout=10)
    """
    if not asyncio.iscoroutine(coro):
        raise TypeError(
            f"run_coroutine_sync() takes a coroutine object (call the async function), got "
            f"{type(coro).__name__}"
        )
    try:
        target = _sync_target(loop, timeout)
    except BaseException:
        coro.close()  # never started: no "coroutine was never awaited" warning
        raise
    if target is not None:
        return target.run_until_complete(coro)
    future = run_in_loop(coro, loop=loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise  # the coroutine's own TimeoutError, unchanged
        future.cancel()
        raise TimeoutError(
            f"run_coroutine_sync(): the coroutine did not finish within {timeout} s "
            "and was cancelled"
        ) from None


def _sync_target(
    loop: asyncio.AbstractEventLoop | None, timeout: float | None
) -> asyncio.AbstractEventLoop | None:
    """Vet a run_coroutine_sync() call; return a stopped loop to run it on, or None."""
    here = threading.current_thread().name
    if asyncio._get_running_loop() is not None:
        raise BlockingCallError(
            f"run_coroutine_sync() called on thread {here!r} while its asyncio loop is "
            "running: blocking that loop on a coroutine would freeze it (and the window, "
            "on the GUI thread) and deadlock. In a coroutine, 'await' it; from a plain "
            "function on this thread, use run_in_loop(coro) (or asyncio.ensure_future) "
            "and a done callback, or make the caller an @async_slot"
        )
    engine = get_engine()
    on_gui = engine.is_gui_thread()
    if on_gui and QThread.currentThread().loopLevel() > 0:
        raise BlockingCallError(
            "run_coroutine_sync() called on the GUI thread while its Qt event loop is "
            "running: blocking it would freeze the window, and running a second loop "
            "here would re-enter code that is still on the stack. Make the caller a "
            "coroutine ('await' it) or an @async_slot, or use run_in_loop(coro) and a "
            "done callback"
        )
    target = loop if loop is not None else (known_gui_loop() if on_gui else None)
    if target is not None and not target.is_running():
        if on_gui or not is_qt_loop(target):
            return target  # start-up code: run it on that very loop, no new loop
    if on_gui and target is None:
        raise NoEventLoopError(_NO_GUI_LOOP)
    if on_gui and timeout is None:
        raise BlockingCallError(
            "run_coroutine_sync() on the GUI thread with no timeout would freeze the "
            "window until another thread's loop finishes the coroutine: pass a timeout, "
            "or await it from a coroutine"
        )
    return None
