"""``LoopThread``: one persistent thread with its own asyncio loop and an initializer.

For work with thread affinity (COM apartments for Windows UI automation, a library that
must be called from the thread that initialised it) and for sync code that needs to run
coroutines: every call runs on the same OS thread, in submission order, and the
initializer and finalizer run exactly once each.  It replaces "a new thread pool and a
new event loop per call" (0.35-0.55 ms and a frozen window per call; see RESEARCH.md).

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
import atexit
import inspect
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from PySide6.QtCore import QCoreApplication, QObject, QThread

from .._closing import watch_window
from .._engine import get_engine
from .._errors import (
    BlockingCallError,
    InitializerError,
    TaskTimeoutError,
    ThreadClosedError,
    describe_exception,
)
from .._owners import OwnerRecord, check_owner
from .._report import report_callback_exception
from .._validation import check_seconds
from .._watchdog import Watchdog

__all__ = ("LoopThread", "LoopThreadOptions")

T = TypeVar("T")
P = ParamSpec("P")

#: Seconds ``close()`` waits by default (and at interpreter exit, per thread).
DEFAULT_CLOSE_TIMEOUT = 5.0

_QUEUED, _RUNNING, _DONE = 0, 1, 2
_names = itertools.count(1)


class _Call:
    """One submitted call: what to run, its Future, its state."""

    __slots__ = (
        "__weakref__",
        "args",
        "cancel_requested",
        "fn",
        "future",
        "kwargs",
        "owner",
        "state",
        "task",
    )

    def __init__(
        self,
        owner: LoopThread,
        fn: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        coro: Awaitable[Any] | None,
    ) -> None:
        self.owner = owner
        self.fn = fn
        self.args: tuple[Any, ...] = args if coro is None else (coro,)
        self.kwargs = kwargs
        self.state = _QUEUED
        self.cancel_requested = False
        self.task: asyncio.Task[Any] | None = None
        self.future: _CallFuture[Any] = _CallFuture(self)

    def time_out(self) -> None:
        """The watchdog's deadline passed (watchdog thread)."""
        self.owner._expire(self)

    def when_done(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(self)`` once the call's Future is resolved (the watchdog drops its entry)."""
        self.future.add_done_callback(lambda _future: fn(self))


class _CallFuture(Future[T]):
    """A Future whose ``cancel()`` also cancels a running coroutine.

    It stays PENDING while the call runs (never RUNNING), so that it can still end
    cancelled when a running coroutine is cancelled.
    """

    def __init__(self, call: _Call) -> None:
        super().__init__()
        self._call: _Call | None = call

    def cancel(self) -> bool:
        call = self._call
        if self.done() or call is None:
            return super().cancel()
        return call.owner._cancel_call(call)


def _resolve(fut: Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
    except InvalidStateError:  # it timed out or was cancelled first: the outcome is moot
        pass


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


class LoopThread:
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
        self.name = name if name is not None else f"casare-loop-{next(_names)}"
        self.timeout = timeout
        self._initializer = initializer
        self._initargs = initargs
        self._finalizer = finalizer
        self._ordered = bool(ordered)
        self._lock = threading.Lock()
        self._items: deque[_Call] = deque()
        self._running: set[_Call] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._closed = False
        self._broken: BaseException | None = None
        self._watchdog = Watchdog(self.name)
        #: Resolves once the initializer has succeeded; fails with InitializerError.
        self.ready: Future[None] = Future()
        self._owner: OwnerRecord | None = None
        if owner is not None:
            self._owner = OwnerRecord(check_owner(owner), lambda _record: self._request_close())
            watch_window(owner, self)  # closing the owner's window closes the thread too
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        _open_threads.add(self)
        self._thread.start()

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
            call = _Call(self, None, (), {}, fn)
        elif callable(fn):
            call = _Call(self, fn, args, kwargs, None)
        else:
            raise TypeError(
                f"submit() takes a function, a coroutine function or a coroutine, got "
                f"{type(fn).__name__}"
            )
        with self._lock:
            if self._broken is not None:
                _close_coroutine(call)
                raise self._broken_error()
            if self._closed:
                _close_coroutine(call)
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

    # -- cancellation and timeouts ------------------------------------------------------------

    def _cancel_call(self, call: _Call) -> bool:
        with self._lock:
            state = call.state
            call.cancel_requested = True
            if state == _QUEUED:
                call.state = _DONE
                try:
                    self._items.remove(call)
                except ValueError:
                    pass
            task, loop = call.task, self._loop
        if state == _QUEUED:
            _close_coroutine(call)
            return Future.cancel(call.future)
        if state == _RUNNING and task is not None and loop is not None:
            # The Future turns cancelled when the coroutine has actually stopped.
            _call_soon(loop, task.cancel)
        return False

    def _expire(self, call: _Call) -> None:
        with self._lock:
            state = call.state
            if state == _QUEUED:
                call.state = _DONE
                try:
                    self._items.remove(call)
                except ValueError:
                    pass
            task, loop = call.task, self._loop
        if state == _DONE:
            return
        if state == _QUEUED:
            _close_coroutine(call)
        _resolve(
            call.future,
            exc=TaskTimeoutError(
                f"a call on LoopThread {self.name!r} ran past its timeout"
                + (
                    "; a running function cannot be interrupted: its result will be discarded"
                    if state == _RUNNING and task is None
                    else ""
                )
            ),
        )
        if task is not None and loop is not None:
            _call_soon(loop, task.cancel)

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

    def _request_close(self, cancel_pending: bool = True) -> None:
        with self._lock:
            self._closed = True
            dropped: list[_Call] = []
            if cancel_pending:
                dropped = list(self._items)
                self._items.clear()
                for call in dropped:
                    call.state = _DONE
            running = (
                [c.task for c in self._running if c.task is not None] if cancel_pending else []
            )
            loop, wake = self._loop, self._wake
        for call in dropped:
            _close_coroutine(call)
            Future.cancel(call.future)
        if loop is not None:
            for task in running:
                _call_soon(loop, task.cancel)
            if wake is not None:
                _call_soon(loop, wake.set)

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

    def _broken_error(self) -> InitializerError:
        cause = self._broken
        assert cause is not None
        err = InitializerError(
            f"the initializer of LoopThread {self.name!r} raised "
            f"{describe_exception(cause)}; no call can run on this thread"
        )
        err.__cause__ = cause
        return err

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        initialized = False
        try:
            try:
                if self._initializer is not None:
                    _run_maybe_async(loop, self._initializer(*self._initargs))
            except BaseException as exc:
                self._fail_initializer(exc)
                return
            initialized = True
            self.ready.set_result(None)
            with self._lock:
                self._wake = asyncio.Event()
                self._loop = loop
            loop.run_until_complete(self._serve())
        finally:
            try:
                if initialized:
                    _cancel_leftovers(loop)
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.run_until_complete(loop.shutdown_default_executor())
                    if self._finalizer is not None:
                        try:
                            _run_maybe_async(loop, self._finalizer())
                        except BaseException as exc:
                            report_callback_exception(f"the finalizer of {self.name!r}", exc)
            finally:
                with self._lock:
                    self._closed = True
                    self._loop = None
                    left = list(self._items)
                    self._items.clear()
                asyncio.set_event_loop(None)
                loop.close()
                self._watchdog.stop()
                for call in left:
                    _close_coroutine(call)
                    Future.cancel(call.future)
                _open_threads.discard(self)

    def _fail_initializer(self, exc: BaseException) -> None:
        with self._lock:
            self._broken = exc
            left = list(self._items)
            self._items.clear()
        err = self._broken_error()
        # Resolved before anything else that runs user code (logging formats the
        # exception): whatever happens next, nobody waits on ``ready`` for ever.
        self.ready.set_exception(err)
        for call in left:
            call.state = _DONE
            _close_coroutine(call)
            _resolve(call.future, exc=err)
        # Logged once, here: nobody may be waiting on ``ready`` or have a call queued,
        # and a thread that silently never works is the failure this class prevents.
        report_callback_exception(f"the initializer of LoopThread {self.name!r}", exc)

    async def _serve(self) -> None:
        wake = self._wake
        assert wake is not None
        tasks: set[asyncio.Task[None]] = set()
        while True:
            with self._lock:
                if self._items:
                    call: _Call | None = self._items.popleft()
                    assert call is not None
                    call.state = _RUNNING
                    self._running.add(call)
                elif self._closed:
                    break
                else:
                    call = None
                    self._wake_pending = False
                    wake.clear()
            if call is None:
                await wake.wait()
            elif self._ordered:
                await self._run(call)
            else:
                task = asyncio.ensure_future(self._run(call))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, call: _Call) -> None:
        future = call.future
        try:
            if call.fn is None:
                value = await self._await(call, call.args[0])
            else:
                value = call.fn(*call.args, **call.kwargs)
                if inspect.isawaitable(value):
                    value = await self._await(call, value)
        except asyncio.CancelledError:
            # Cancelled through the Future, by close(), or by its timeout (then the
            # Future already holds TaskTimeoutError and stays so).
            if not future.done():
                Future.cancel(future)
        except BaseException as exc:
            _resolve(future, exc=exc)
        else:
            _resolve(future, value)
        finally:
            with self._lock:
                call.state = _DONE
                call.task = None
                self._running.discard(call)
            # Drop the references now: the caller may keep the Future for long.
            call.fn = None
            call.args = ()
            call.kwargs = {}

    async def _await(self, call: _Call, awaitable: Awaitable[Any]) -> Any:
        # Its own task, so that cancelling the call never cancels the serving loop.
        task = asyncio.ensure_future(_contained(awaitable))
        with self._lock:
            call.task = task
            stop_now = call.cancel_requested or call.future.done()
        if stop_now:  # cancelled or timed out before it had a task to cancel
            task.cancel()
        ok, value = await task
        if not ok:
            raise value
        return value


async def _contained(awaitable: Awaitable[Any]) -> tuple[bool, Any]:
    """Await the call's awaitable; return ``(True, value)`` or ``(False, exception)``.

    asyncio lets ``SystemExit`` and ``KeyboardInterrupt`` raised by a task's coroutine
    escape the event loop (and ``GeneratorExit`` ends the loop's own coroutine), which
    would end this thread and every call on it.  Caught here, inside the task, they
    are held by the call's Future like any other exception; cancellation still passes.
    """
    try:
        return True, await awaitable
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return False, exc


def _run_maybe_async(loop: asyncio.AbstractEventLoop, value: Any) -> Any:
    if inspect.isawaitable(value):
        return loop.run_until_complete(value)
    return value


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _close_coroutine(call: _Call) -> None:
    """Close a coroutine object that will never run (no "never awaited" warning)."""
    if call.fn is None and call.args:
        coro = call.args[0]
        if inspect.iscoroutine(coro):
            coro.close()


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop has closed: nothing left to wake or cancel
        pass


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


# Threads still open at interpreter exit are closed with a bounded wait, so that their
# finalizers run (CoUninitialize) while the interpreter is still intact.
_open_threads: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _close_at_exit() -> None:
    deadline = time.monotonic() + DEFAULT_CLOSE_TIMEOUT
    for thread in list(_open_threads):
        thread._request_close()
    for thread in list(_open_threads):
        thread._thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(_close_at_exit)
