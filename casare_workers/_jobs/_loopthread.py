"""``LoopThread``: one persistent thread with its own asyncio loop and an initializer.

For work with thread affinity (COM apartments for Windows UI automation, a library that
must be called from the thread that initialised it) and for sync code that needs to run
coroutines: every call runs on the same OS thread, in submission order, and the
initializer and finalizer run exactly once each.  It replaces "a new thread pool and a
new event loop per call", which freezes the window for every call made from the GUI
thread (``benchmarks/bench_sync_async.py`` measures both).

Data flow::

    any thread                                 the loop thread (daemon)
    ----------                                 ------------------------
                                               initializer(*initargs)       once
    submit(fn, *args) ─► Future ─┐
    call(fn, *args)  (blocks) ───┼─► FIFO ───► serve(): one call at a time (ordered=True)
    options(timeout=5).call(...) ┘  wake-up    or each coroutine as its own task
                                    (call_soon_threadsafe, only when idle)
    close(timeout) ────────────────────────►   finalizer()                   once
                                               loop closed, thread ends

A call is a plain function, a coroutine function or a coroutine object; a function that
returns an awaitable has it awaited.  The caller's Future gets the value or the
original exception object (``SystemExit``, ``KeyboardInterrupt`` and ``GeneratorExit``
included: they end that call only, never the thread).  A per-call timeout fails the
Future at the deadline (counted from submission): a queued call never starts, a running
coroutine is cancelled, a running plain function cannot be interrupted and its eventual
result is discarded.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from PySide6.QtCore import QCoreApplication, QObject, QThread

from .._closing import watch_window
from .._engine import get_engine
from .._errors import (
    BlockingCallError,
    ThreadClosedError,
)
from .._owners import OwnerRecord, check_owner
from .._validation import check_seconds
from ._loopserver import DEFAULT_CLOSE_TIMEOUT, LoopCall, LoopServer, close_coroutine

__all__ = ("LoopThread", "LoopThreadOptions")

T = TypeVar("T")
P = ParamSpec("P")

_names = itertools.count(1)


@dataclass(frozen=True, slots=True)
class LoopThreadOptions:
    """Per-call options bound to a :class:`LoopThread` (``thread.options(timeout=...)``).

    Kept apart from ``submit``'s arguments so they never collide with the keyword
    arguments of your function.

    Attributes:
        thread: The thread the calls go to.
        timeout: Seconds from submission until the call's Future fails with
            ``TaskTimeoutError`` (None: no limit).
    """

    thread: LoopThread
    timeout: float | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """As :meth:`LoopThread.submit`, with these options."""
        return self.thread._submit(fn, args, kwargs, self.timeout)

    def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`LoopThread.call`, with these options."""
        return self.thread._call_blocking(fn, args, kwargs, self.timeout)


class LoopThread(LoopServer):
    """A persistent thread running an asyncio loop; calls run on it in order.

    Args:
        name: The thread's name.
        initializer: Called once on the thread before any call (may be ``async``),
            e.g. ``pythoncom.CoInitialize``.  If it raises, the exception is logged
            once (the ``casare_workers`` logger), every call fails with
            :class:`~casare_workers.InitializerError` (the cause attached) and the
            thread ends.
        initargs: Arguments for ``initializer``.
        finalizer: Called once on the thread at close (may be ``async``), only if the
            initializer succeeded, e.g. ``pythoncom.CoUninitialize``.  An exception it
            raises is logged once; the thread ends all the same.
        timeout: The default per-call timeout in seconds (None: no limit); override it
            per call with :meth:`options`.
        ordered: True (default): one call at a time, in submission order, each finished
            before the next starts, which is what thread-affine APIs need.  False:
            coroutines start in order but run concurrently on the loop.
        owner: A QObject; the thread is closed (without waiting) when it is destroyed
            or, for a widget, when its window is closed (as for every ``owner=``).

    The thread is a daemon thread: a call stuck in C code cannot hold the process's
    exit.  Threads still open at interpreter exit are closed (finalizer included) with
    a bounded wait.

    Example:
        >>> uia = LoopThread("uia", initializer=pythoncom.CoInitialize,
        ...                  finalizer=pythoncom.CoUninitialize, timeout=10)
        >>> window = uia.call(find_window, "Notepad")   # from a worker thread
        >>> future = uia.submit(click, window, "OK")    # from anywhere, non-blocking
        >>> uia.close()
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        finalizer: Callable[[], Any] | None = None,
        timeout: float | None = None,
        ordered: bool = True,
        owner: QObject | None = None,
    ) -> None:
        for what, fn in (("initializer", initializer), ("finalizer", finalizer)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{what} must be callable, got {type(fn).__name__}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        check_seconds("timeout", timeout, allow_none=True)
        self.timeout = timeout
        #: Resolves once the initializer has succeeded; fails with InitializerError.
        self.ready: Future[None] = Future()
        name = name if name is not None else f"casare-loop-{next(_names)}"
        super().__init__(name, initializer, initargs, finalizer, ordered)
        self._owner: OwnerRecord | None = None
        if owner is not None:
            self._owner = OwnerRecord(check_owner(owner), lambda _record: self._request_close())
            watch_window(owner, self)  # closing the owner's window closes the thread too
        self._start_thread()

    # -- submitting (any thread) ------------------------------------------------------------

    @overload
    def submit(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]: ...

    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...

    @overload
    def submit(self, fn: Coroutine[Any, Any, T], /) -> Future[T]: ...

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` (or a coroutine object); return its Future.

        Non-blocking, from any thread (including the loop thread itself).

        Raises:
            ThreadClosedError: After :meth:`close`.
            InitializerError: The initializer failed.
            TypeError: ``fn`` is neither callable nor a coroutine.
        """
        return self._submit(fn, args, kwargs, self.timeout)

    def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (or a coroutine) on the thread; block for its result.

        For worker threads and sync code that must call into the thread.

        Returns:
            The call's return value (a coroutine's result).

        Raises:
            Exception: The call's own exception, unchanged (traceback included).
            TaskTimeoutError: The call's timeout passed.
            BlockingCallError: Called where an event loop is running (the GUI thread
                inside its running Qt or qasync loop, any thread inside a running
                asyncio loop), with or without a timeout: it would block that loop for
                the whole call; ``await asyncio.wrap_future(thread.submit(...))``
                there.  Also on the GUI thread with no timeout (start-up code: give
                one), and on the loop thread itself (it would wait for itself).
        """
        return self._call_blocking(fn, args, kwargs, self.timeout)

    def options(self, *, timeout: float | None = None) -> LoopThreadOptions:
        """Options for the next calls: ``thread.options(timeout=5).call(fn, x)``."""
        check_seconds("timeout", timeout, allow_none=True)
        return LoopThreadOptions(self, timeout)

    def _submit(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Future[Any]:
        if inspect.iscoroutine(fn) or (inspect.isawaitable(fn) and not callable(fn)):
            if args or kwargs:
                if inspect.iscoroutine(fn):
                    fn.close()  # it will never run: no "coroutine was never awaited"
                hint = (
                    "; for a timeout use thread.options(timeout=...).call(coro)"
                    if "timeout" in kwargs
                    else ""
                )
                raise TypeError(
                    "a coroutine object takes no arguments (they are in the coroutine): "
                    f"pass it alone, submit(coro) or call(coro){hint}"
                )
            call = LoopCall(self, None, (), {}, fn)
        elif callable(fn):
            call = LoopCall(self, fn, args, kwargs, None)
        else:
            raise TypeError(
                f"submit() takes a function, a coroutine function or a coroutine, got "
                f"{type(fn).__name__}"
            )
        with self._lock:
            if self._broken is not None:
                close_coroutine(call)
                raise self._broken_error()
            if self._closed:
                close_coroutine(call)
                raise ThreadClosedError(
                    f"LoopThread {self.name!r} is closed; create a new one for new work"
                )
            self._items.append(call)
            loop, wake = self._loop, None
            if loop is not None and not self._wake_pending:
                self._wake_pending = True
                wake = self._wake
        if wake is not None and loop is not None:
            loop.call_soon_threadsafe(wake.set)
        if timeout is not None:
            self._watchdog.watch(call, timeout)
        return call.future

    def _call_blocking(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        if threading.current_thread() is self._thread:
            raise BlockingCallError(
                f"call() on LoopThread {self.name!r} from its own thread would wait for "
                "itself; inside a call, await the coroutine or call the function directly"
            )
        if _event_loop_running_here():
            # Refused before anything is queued: closes a coroutine object given.
            _discard(fn)
            raise BlockingCallError(
                f"call() on LoopThread {self.name!r} where an event loop is running "
                f"(thread {threading.current_thread().name!r}) would block that loop for "
                "the whole call (on the GUI thread: freeze the window), with or without "
                "a timeout. In a coroutine, 'await asyncio.wrap_future(thread.submit(...))'; "
                "in a plain function, use submit() and future.add_done_callback(...)"
            )
        if timeout is None and _on_gui_thread():
            _discard(fn)
            raise BlockingCallError(
                f"call() on LoopThread {self.name!r} from the GUI thread with no timeout "
                "would freeze the window: use submit() and react to the Future, or "
                "options(timeout=...).call(...) (start-up code, before the event loop runs)"
            )
        return self._submit(fn, args, kwargs, timeout).result()

    # -- closing ------------------------------------------------------------------------------

    def close(
        self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT, *, cancel_pending: bool = True
    ) -> bool:
        """Stop accepting calls, run the finalizer on the thread, and join it.

        Args:
            timeout: Seconds to wait for the thread to end (None: no limit, refused on
                the GUI thread).
            cancel_pending: True: queued calls are cancelled and running coroutines are
                cancelled.  False: queued calls run first.

        Returns:
            True if the thread has ended.  Idempotent.
        """
        check_seconds("timeout", timeout, allow_zero=True, allow_none=True)
        if timeout is None and _on_gui_thread():
            raise BlockingCallError(
                f"close() of LoopThread {self.name!r} on the GUI thread needs a timeout"
            )
        self._request_close(cancel_pending)
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def window_closed(self, reason: str) -> None:
        """The owner's window was closed (``_closing``): close, without waiting.  GUI thread."""
        self._request_close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- observing ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the owner died, or the initializer failed)."""
        return self._closed or self._broken is not None

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread:
        """The underlying ``threading.Thread``."""
        return self._thread

    def pending(self) -> int:
        """Calls queued and not started yet."""
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        state = "broken" if self._broken else ("closed" if self._closed else "open")
        return f"<LoopThread {self.name!r} {state} pending={self.pending()}>"

    # -- the loop thread ----------------------------------------------------------------------


def _discard(fn: object) -> None:
    """Close a coroutine object that will never run (no "never awaited" warning)."""
    if inspect.iscoroutine(fn):
        fn.close()


def _event_loop_running_here() -> bool:
    """True if an asyncio loop runs in this thread, or the GUI thread's Qt loop does."""
    if asyncio._get_running_loop() is not None:
        return True
    return _on_gui_thread() and QThread.currentThread().loopLevel() > 0


def _on_gui_thread() -> bool:
    if QCoreApplication.instance() is None:
        return False
    return get_engine().is_gui_thread()
