"""``LoopServer``: the calls of a ``LoopThread`` and the thread that serves them.

``LoopThread`` (the public face: submit, call, options, close) builds on it.  Here is
each call's record and Future, the queue under one lock, the loop thread's body
(initializer, serving, finalizer), and what cancels or times out a single call::

    any thread                     the loop thread (daemon)
    ----------                     ------------------------
    LoopThread._submit             _main(): initializer(*initargs), once
      items.append(call) ───────►  _serve(): pop a call
      wake (only when idle)          _run(call): fn(*args), awaiting what it returns
                                     (ordered: one at a time; else one task each)
    CallFuture.cancel ─► _cancel_call   a queued call never starts; a running
    watchdog deadline ─► _expire        coroutine's task is cancelled
    _request_close ────────────►   leftovers cancelled, finalizer(), once; loop closed

The package's at-exit hook closes every thread still open (a bounded wait, so that
finalizers run while the interpreter is intact).
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

from .._errors import InitializerError, TaskTimeoutError, describe_exception
from .._report import report_callback_exception
from .._watchdog import Watchdog

__all__ = ("DEFAULT_CLOSE_TIMEOUT", "LoopCall", "LoopServer", "close_coroutine")

T = TypeVar("T")

#: Seconds ``close()`` waits by default (and at interpreter exit, per thread).
DEFAULT_CLOSE_TIMEOUT = 5.0

_QUEUED, _RUNNING, _DONE = 0, 1, 2


class LoopCall:
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
        owner: LoopServer,
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
        self.future: CallFuture[Any] = CallFuture(self)

    def time_out(self) -> None:
        """The watchdog's deadline passed (watchdog thread)."""
        self.owner._expire(self)

    def when_done(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(self)`` once the call's Future is resolved (the watchdog drops its entry)."""
        self.future.add_done_callback(lambda _future: fn(self))


class CallFuture(Future[T]):
    """A Future whose ``cancel()`` also cancels a running coroutine.

    It stays PENDING while the call runs (never RUNNING), so that it can still end
    cancelled when a running coroutine is cancelled.
    """

    def __init__(self, call: LoopCall) -> None:
        super().__init__()
        self._call: LoopCall | None = call

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


class LoopServer:
    """The queue of calls and the daemon thread that serves it (``LoopThread``'s base).

    Args:
        name: The thread's name.
        initializer: Called once on the thread before any call (may be ``async``).
        initargs: Arguments for ``initializer``.
        finalizer: Called once on the thread at close, if the initializer succeeded.
        ordered: One call at a time (True), or each coroutine as its own task.

    Subclasses set ``ready`` before calling this, and start the thread with
    :meth:`_start_thread`.
    """

    #: Resolves once the initializer has succeeded; fails with InitializerError.
    ready: Future[None]

    def __init__(
        self,
        name: str,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
        finalizer: Callable[[], Any] | None,
        ordered: bool,
    ) -> None:
        self.name = name
        self._initializer = initializer
        self._initargs = initargs
        self._finalizer = finalizer
        self._ordered = bool(ordered)
        self._lock = threading.Lock()
        self._items: deque[LoopCall] = deque()
        self._running: set[LoopCall] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._closed = False
        self._broken: BaseException | None = None
        self._watchdog = Watchdog(name)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _start_thread(self) -> None:
        _open_threads.add(self)
        self._thread.start()

    # -- cancellation and timeouts ------------------------------------------------------------

    def _cancel_call(self, call: LoopCall) -> bool:
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
            close_coroutine(call)
            return Future.cancel(call.future)
        if state == _RUNNING and task is not None and loop is not None:
            # The Future turns cancelled when the coroutine has actually stopped.
            _call_soon(loop, task.cancel)
        return False

    def _expire(self, call: LoopCall) -> None:
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
            close_coroutine(call)
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

    def _request_close(self, cancel_pending: bool = True) -> None:
        with self._lock:
            self._closed = True
            dropped: list[LoopCall] = []
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
            close_coroutine(call)
            Future.cancel(call.future)
        if loop is not None:
            for task in running:
                _call_soon(loop, task.cancel)
            if wake is not None:
                _call_soon(loop, wake.set)

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
                    close_coroutine(call)
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
            close_coroutine(call)
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
                    call: LoopCall | None = self._items.popleft()
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

    async def _run(self, call: LoopCall) -> None:
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

    async def _await(self, call: LoopCall, awaitable: Awaitable[Any]) -> Any:
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


def close_coroutine(call: LoopCall) -> None:
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


# Threads still open at interpreter exit are closed with a bounded wait, so that their
# finalizers run (CoUninitialize) while the interpreter is still intact.
_open_threads: weakref.WeakSet[LoopServer] = weakref.WeakSet()


def _close_at_exit() -> None:
    deadline = time.monotonic() + DEFAULT_CLOSE_TIMEOUT
    for thread in list(_open_threads):
        thread._request_close()
    for thread in list(_open_threads):
        thread._thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(_close_at_exit)
