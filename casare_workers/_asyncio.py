"""The asyncio bridge: await workers, cross threads safely, sync↔async without nested loops.

qasync runs asyncio on the Qt event loop, so on the GUI thread the delivery engine's
drain and the asyncio loop are the same thread and the same event loop.  ``await``
resolves the awaiting future straight from the drain::

     GUI thread (qasync loop = Qt event loop)          worker thread
     ----------------------------------------          -------------
     await handle ─► loop future, registered with
                     handle._when_delivered
                                                       task settles ─► engine.post_item(task)
     engine drain (one posted event per batch) ◄──────────────┘
       task._deliver(): signals, continuations, then its hooks: future.set_result(None)
       └► one call_soon: the coroutine resumes and reads the outcome off the handle

One posted event wakes the GUI for a whole burst of results (stock asyncio and qasync
pay a self-pipe write or a signal *per* result, and qasync then a timer for the
``call_soon`` and another for the task's wake-up).  On an asyncio loop in another thread
(a long job's own loop) the waiter uses ``loop.call_soon_threadsafe`` instead.

The rest of the module builds on that:

* :func:`asyncify` turns a blocking function into a coroutine function on a named pool;
  :class:`PoolExecutor` / :func:`attach_loop` make the manager's pool the loop's
  default executor (``asyncio.to_thread``, ``run_in_executor(None, ...)``).
* :func:`run_in_loop` (any thread → the GUI loop, a ``concurrent.futures.Future``) and
  :func:`run_coroutine_sync` (a worker thread blocks on a coroutine run on the GUI
  loop); both refuse to block a loop on itself (:class:`BlockingCallError`).
* :func:`async_slot`, :class:`TaskGroup`, :func:`wait_signal`, :func:`open_dialog`:
  coroutines that belong to widgets, are cancelled with them and never nest loops.

Only ``asyncio`` is imported here; qasync is recognised by its class, never imported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast, overload

import shiboken6
from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, SignalInstance, Slot

from ._closing import watch_window
from ._core._call import name_of as _name_of
from ._core._handle import TaskHandle
from ._core._state import TaskState
from ._engine import DeliveryEngine, get_engine
from ._errors import BlockingCallError, NoEventLoopError, TaskCancelledError
from ._introspect import PLAIN
from ._owners import check_owner
from ._pools._map import MapHandle, set_async_iterator
from ._report import report_callback_exception

if TYPE_CHECKING:
    from PySide6.QtWidgets import QDialog

    from ._manager import TaskOptions, WorkerManager, _ManagerCore

__all__ = (
    "PoolExecutor",
    "TaskGroup",
    "async_slot",
    "asyncify",
    "attach_loop",
    "await_job",
    "await_task",
    "iterate_map",
    "open_dialog",
    "run_coroutine_sync",
    "run_in_loop",
    "wait_signal",
)

logger = logging.getLogger("casare_workers")

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

_SUCCEEDED, _CANCELLED = TaskState.SUCCEEDED, TaskState.CANCELLED
_QUEUED = TaskState.QUEUED

ExcInfoHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


# -- which loop is which ---------------------------------------------------------------------

# Event loops that run on the Qt event loop, recognised by the module of a class in
# their MRO (so qasync is never imported here).  Only on such a loop does the delivery
# engine's drain run *inside* the loop, which is what the fast path relies on.
_QT_LOOP_MODULES = ("qasync", "PySide6.QtAsyncio")
_qt_loop_types: dict[type, bool] = {}


def _is_qt_loop(loop: asyncio.AbstractEventLoop) -> bool:
    kind = type(loop)
    known = _qt_loop_types.get(kind)
    if known is None:
        known = any(cls.__module__.startswith(_QT_LOOP_MODULES) for cls in kind.__mro__)
        _qt_loop_types[kind] = known
    return known


_gui_loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None


def _register_gui_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _gui_loop_ref
    ref = _gui_loop_ref
    if ref is None or ref() is not loop:
        _gui_loop_ref = weakref.ref(loop)


def _known_gui_loop() -> asyncio.AbstractEventLoop | None:
    ref = _gui_loop_ref
    loop = ref() if ref is not None else None
    if loop is None or loop.is_closed():
        return None
    return loop


def _running_loop(what: str) -> asyncio.AbstractEventLoop:
    loop = asyncio._get_running_loop()
    if loop is None:
        raise NoEventLoopError(
            f"{what} needs a running asyncio event loop in this thread; run it from a "
            "coroutine on the qasync loop (e.g. asyncio.run(main(), loop_factory="
            "qasync.QEventLoop)) or on a loop of your own"
        )
    return loop


def _note_loop(loop: asyncio.AbstractEventLoop, engine: DeliveryEngine) -> bool:
    """True if ``loop`` is the Qt loop of the GUI thread (and remember it as such)."""
    if _is_qt_loop(loop) and engine.is_gui_thread():
        _register_gui_loop(loop)
        return True
    return False


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    if asyncio._get_running_loop() is loop:
        return True
    return _is_qt_loop(loop) and get_engine().is_gui_thread()


def _cancel_task(task: asyncio.Future[Any], message: str) -> None:
    """Cancel an asyncio task from any thread (it is cancelled on its loop's thread)."""
    loop = task.get_loop()
    if loop.is_closed() or task.done():
        return
    if _on_loop_thread(loop):
        task.cancel(message)
        return
    try:
        loop.call_soon_threadsafe(task.cancel, message)
    except RuntimeError:  # closed meanwhile: nothing left to cancel
        pass


# -- await a task handle, a long job or a map --------------------------------------------------


class _GuiWaiter:
    """Wakes one coroutine awaiting a long job on the GUI thread's Qt loop, from a drain."""

    __slots__ = ("engine", "future")

    def __init__(self, future: asyncio.Future[None], engine: DeliveryEngine) -> None:
        self.future = future
        self.engine = engine

    def __call__(self, _settled: object) -> None:
        """The done callback; runs on the thread that settled the job."""
        self.engine.post_item(self)

    def _deliver(self) -> None:
        """Runs on the GUI thread, in the delivery engine's drain."""
        _wake(self.future)


def _wake(future: asyncio.Future[None]) -> None:
    # A loop closed meanwhile (application exit) has nobody left to wake; resolving
    # the future would make it schedule a callback on a closed loop.
    if not future.done() and not future.get_loop().is_closed():
        future.set_result(None)


class _ThreadWaiter:
    """Wakes one awaiting coroutine on a loop in any thread (``call_soon_threadsafe``)."""

    __slots__ = ("future", "loop")

    def __init__(self, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        self.future = future
        self.loop = loop

    def __call__(self, _settled: object) -> None:
        """The done callback; runs on the thread that settled the task."""
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            pass

    def _resolve(self) -> None:
        _wake(self.future)


def _make_waiter(
    future: asyncio.Future[None],
    loop: asyncio.AbstractEventLoop,
    qt: bool,
    engine: DeliveryEngine,
) -> _GuiWaiter | _ThreadWaiter:
    if qt:
        return _GuiWaiter(future, engine)
    return _ThreadWaiter(future, loop)


def _cancelled_error(name: str, reason: str | None) -> asyncio.CancelledError:
    return asyncio.CancelledError(f"task {name!r} was {reason or 'cancelled'}")


def await_task(handle: TaskHandle[T]) -> Generator[Any, None, T]:
    """The body of ``TaskHandle.__await__`` (runs in the awaiting coroutine).

    Returns the result, or raises the function's exception unchanged, or
    ``asyncio.CancelledError`` if the task was cancelled.  Cancelling the awaiting
    coroutine cancels the task (queued: removed; running: its ``ctx.cancelled`` turns
    True).
    """
    loop = _running_loop("await on a task handle")
    qt = _note_loop(loop, get_engine())
    # On the GUI loop, a task that ended is awaited until its outcome was *delivered*
    # (its finished signal and continuations have run, even if a slot of it is still
    # inside a nested event loop), so the handle's signals always precede the awaiter's
    # next line.
    if not (handle.delivered() if qt else handle.done()):
        future: asyncio.Future[None] = loop.create_future()
        if qt:
            handle.when_delivered(functools.partial(_wake, future))
        else:
            handle.add_done_callback(_ThreadWaiter(future, loop))
        try:
            yield from future
        except asyncio.CancelledError:
            handle.cancel(reason="cancelled: the awaiting coroutine was cancelled")
            raise
    try:
        return handle.result(0)
    except TaskCancelledError:
        if not handle.cancelled():
            raise  # the function's own TaskCancelledError (a failure), unchanged
        raise _cancelled_error(handle.name, handle.cancel_reason) from None


def await_job(job: Any) -> Generator[Any, None, Any]:
    """Await anything that has ``add_done_callback(fn)`` and a ``future`` view.

    For long jobs (and any object settled on another thread whose ``future`` is a
    ``concurrent.futures.Future``); a bare ``concurrent.futures.Future`` works too.
    A long job wires it up with::

        def __await__(self):
            from ._asyncio import await_job
            return await_job(self)

    Cancelling the awaiting coroutine calls ``job.cancel()`` (or cancels the future).
    """
    view: concurrent.futures.Future[Any] = (
        job if isinstance(job, concurrent.futures.Future) else job.future
    )
    if not view.done():
        loop = _running_loop("await on a job")
        engine = get_engine()
        future: asyncio.Future[None] = loop.create_future()
        job.add_done_callback(_make_waiter(future, loop, _note_loop(loop, engine), engine))
        try:
            yield from future
        except asyncio.CancelledError:
            cancel = getattr(job, "cancel", None)
            (cancel if callable(cancel) else view.cancel)()
            raise
    if view.cancelled():
        name = getattr(job, "name", type(job).__name__)
        raise _cancelled_error(str(name), getattr(job, "cancel_reason", None))
    return view.result(0)


class _MapIterator(Generic[R]):
    """``async for index, value in map_handle``: results as their chunks finish."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_cursor",
        "_engine",
        "_future",
        "_handle",
        "_loop",
        "_poked",
        "_qt",
    )

    def __init__(self, handle: MapHandle[R], loop: asyncio.AbstractEventLoop) -> None:
        self._handle = handle
        self._loop = loop
        self._engine = handle._engine
        self._qt = _note_loop(loop, self._engine)
        self._buffer: deque[tuple[int, R]] = deque()
        self._cursor = 0
        self._future: asyncio.Future[None] | None = None
        self._poked = False
        with handle._lock:
            handle._chunk_hooks = (*handle._chunk_hooks, self._poke)
        handle.add_done_callback(self._poke_done)

    def __aiter__(self) -> _MapIterator[R]:
        return self

    def _poke(self) -> None:
        """A chunk finished (runs on the runner's thread): wake the iterator once."""
        if self._poked:
            return
        self._poked = True
        if self._qt:
            self._engine.post_item(self)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop was closed: nobody is iterating any more
            pass

    def _poke_done(self, _handle: object) -> None:
        self._poke()

    def _deliver(self) -> None:
        """Runs on the loop's thread (the engine's drain on the GUI thread)."""
        self._poked = False  # before resolving: a later chunk posts its own wake-up
        future = self._future
        if future is not None:
            _wake(future)

    def _detach(self) -> None:
        handle = self._handle
        with handle._lock:
            handle._chunk_hooks = tuple(h for h in handle._chunk_hooks if h != self._poke)

    async def __anext__(self) -> tuple[int, R]:
        buffer = self._buffer
        handle = self._handle
        while True:
            if buffer:
                return buffer.popleft()
            # Reading the ranges and creating the future happen with no suspension in
            # between, and _deliver runs on this same thread: no wake-up is lost.
            with handle._lock:
                ranges = handle._ranges
                fresh = ranges[self._cursor :]
                self._cursor = len(ranges)
                finished = handle._finished
            if fresh:
                results = handle._results
                for start, end in fresh:
                    buffer.extend(zip(range(start, end), results[start:end], strict=True))
                continue
            if finished:
                self._detach()
                state = handle._state
                if state is _SUCCEEDED:
                    raise StopAsyncIteration
                if state is _CANCELLED:
                    raise _cancelled_error(handle.name, handle.cancel_reason)
                exc = handle._exc
                assert exc is not None
                handle._retrieved()
                raise exc
            future: asyncio.Future[None] = self._loop.create_future()
            self._future = future
            try:
                await future
            except asyncio.CancelledError:
                self._detach()
                handle.cancel(reason="cancelled: the iterating coroutine was cancelled")
                raise
            finally:
                self._future = None


def iterate_map(handle: MapHandle[R]) -> _MapIterator[R]:
    """The body of ``MapHandle.__aiter__``: an async iterator of ``(index, value)``."""
    return _MapIterator(handle, _running_loop("async iteration over a map"))


set_async_iterator(iterate_map)


# -- blocking functions as coroutines; the manager's pool as the loop's executor ---------------


def _submit_plain(
    core: _ManagerCore, opts: TaskOptions, fn: Callable[..., T], args: Any, kwargs: Any
) -> TaskHandle[T]:
    """Submit ``fn(*args, **kwargs)`` exactly as given (no ``ctx`` injection).

    An executor's contract is to call the function with the arguments it was given; a
    third-party function that happens to declare ``ctx`` must not receive a TaskContext.
    """
    if not callable(fn):
        raise TypeError(f"submit() expects a callable, got {fn!r} ({type(fn).__name__})")
    core.check_open()
    pool = core.pool(opts.pool)
    task: TaskHandle[T] = TaskHandle(fn, args, kwargs, core.engine, _name_of(fn), mode=PLAIN)
    core.enqueue(task, pool, opts, pool.submit)
    return task


class PoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ``concurrent.futures`` executor that runs on one of a manager's pools.

    Make it an asyncio loop's default executor (:func:`attach_loop` does) and
    ``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)`` run on the manager's
    bounded pool instead of qasync's own QThreads (which are joined at loop close with
    no limit and abort the process if destroyed while running) or a second, unbounded
    pool.

    It is a view, not a pool: it starts no thread of its own.  It subclasses
    ``ThreadPoolExecutor`` only because ``loop.set_default_executor`` accepts nothing
    else; every method of that class is replaced.

    ``shutdown(wait=True)`` waits at most the manager's ``shutdown_timeout`` for the
    work submitted through this executor, then cancels what is left (a Python thread
    cannot be killed: a stuck function runs on, on a daemon thread that does not hold
    the process's exit).  Shutting the manager down stops this executor too.

    Functions are called exactly as given (a parameter named ``ctx`` receives no
    :class:`TaskContext`).  Like every manager task they run in a copy of the
    submitter's contextvars (plain ``run_in_executor`` does not copy them).

    Example:
        >>> executor = PoolExecutor(manager, "io")                        # doctest: +SKIP
        >>> future = executor.submit(read_file, path)   # a concurrent Future  # doctest: +SKIP
        >>> data = await loop.run_in_executor(executor, read_file, path)  # doctest: +SKIP
    """

    def __init__(self, manager: WorkerManager, pool: str = "io") -> None:
        core = manager._core
        max_workers = core.pool(pool).max_workers  # UnknownPoolError names the pools
        # No thread is ever started by the base class: its submit() is replaced.
        super().__init__(max_workers=max_workers, thread_name_prefix=f"casare-{pool}")
        self._core = core
        self._options = core.options(pool, 0, None, None, None, None)
        self._tasks: set[TaskHandle[Any]] = set()
        self._closed = False
        self._guard = threading.Lock()
        self._replaced: object = None  # a previous default executor kept alive (attach_loop)

    @property
    def pool(self) -> str:
        """The name of the manager pool this executor submits to."""
        return self._options.pool

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on the pool; return its ``concurrent.futures.Future``.

        Cancelling the Future cancels the task (queued: removed; running: it ends
        cancelled at once).  Thread-safe.

        Raises:
            RuntimeError: After :meth:`shutdown` (as ``ThreadPoolExecutor`` does).
            ManagerShutdownError: After the manager was shut down.
        """
        with self._guard:
            if self._closed:
                raise RuntimeError(
                    "cannot schedule new futures after shutdown (this PoolExecutor was shut "
                    "down; the manager's pools may still be open)"
                )
        task = _submit_plain(self._core, self._options, fn, args, kwargs)
        future = task.future
        with self._guard:
            self._tasks.add(task)
        task.add_done_callback(self._forget)
        return future

    def _forget(self, task: TaskHandle[Any]) -> None:
        with self._guard:
            self._tasks.discard(task)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; optionally cancel queued work; wait a bounded time.

        Args:
            wait: Wait for the work submitted through this executor, at most the
                manager's ``shutdown_timeout``; what is still running then is cancelled
                and logged.  Never an unbounded join.
            cancel_futures: Cancel work that has not started yet.
        """
        with self._guard:
            self._closed = True
            tasks = list(self._tasks)
        if cancel_futures:
            for task in tasks:
                if task._state is _QUEUED:
                    task.cancel(reason="executor shut down")
        if not wait:
            return
        # On the application's way out (the loop closing after aboutToQuit) this wait and
        # the manager's own at exit share one deadline: see _ManagerCore.quit_deadline.
        deadline = self._core.quit_deadline()
        for task in tasks:
            if not task.wait(max(0.0, deadline - time.monotonic())):
                break
        left = [task for task in tasks if not task.done()]
        for task in left:
            task.cancel(reason="executor shut down")
        if left:
            logger.warning(
                "PoolExecutor(%r).shutdown: %d function(s) still running after %.1f s were "
                "cancelled and left to finish on daemon threads: %s",
                self.pool,
                len(left),
                self._core.shutdown_timeout,
                ", ".join(task.name for task in left),
            )

    def __repr__(self) -> str:
        state = "shut down" if self._closed else "open"
        return f"<PoolExecutor pool={self.pool!r} {state} in flight={len(self._tasks)}>"


def attach_loop(
    loop: asyncio.AbstractEventLoop | None = None,
    manager: WorkerManager | None = None,
    *,
    executor_pool: str = "io",
) -> PoolExecutor:
    """Wire an asyncio loop to a manager: its default executor becomes a manager pool.

    Afterwards ``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)`` run on the
    manager's ``executor_pool`` and stop with it; called on the GUI thread it also
    records ``loop`` as the GUI loop that :func:`run_in_loop`,
    :func:`run_coroutine_sync` and :func:`async_slot` use from other threads.  Call it
    once, before the first ``run_in_executor`` (qasync creates its own executor then).

    Args:
        loop: The loop (default: the loop running in this thread).
        manager: The manager (default: :func:`default_manager`).
        executor_pool: The pool that becomes the default executor (default ``"io"``).

    Returns:
        The installed :class:`PoolExecutor`.

    Raises:
        NoEventLoopError: No ``loop`` was given and none runs in this thread.
        UnknownPoolError: The manager has no such pool.

    Example:
        >>> app = QApplication(sys.argv)                        # doctest: +SKIP
        >>> manager = WorkerManager()                           # doctest: +SKIP
        >>> loop = qasync.QEventLoop(app)                       # doctest: +SKIP
        >>> attach_loop(loop, manager)                          # doctest: +SKIP
        >>> with loop:                                          # doctest: +SKIP
        ...     loop.run_until_complete(main())
    """
    if loop is None:
        loop = _running_loop("attach_loop() without a loop argument")
    if manager is None:
        from ._manager import default_manager

        manager = default_manager()
    executor = PoolExecutor(manager, executor_pool)
    previous = _default_executor_of(loop)
    if previous is not None and not isinstance(previous, PoolExecutor):
        # qasync made its QThreadExecutor at the first run_in_executor.  Dropping it
        # would destroy running QThreads (a process abort): let its threads end and keep
        # it referenced as long as ours.
        logger.warning(
            "attach_loop(): the loop already had a default executor (%r); call "
            "attach_loop() before the first run_in_executor/to_thread",
            previous,
        )
        previous.shutdown(wait=False)
        executor._replaced = previous
    loop.set_default_executor(executor)
    if manager.engine.is_gui_thread():
        _register_gui_loop(loop)
    return executor


def _default_executor_of(loop: asyncio.AbstractEventLoop) -> Any:
    # No public getter exists: qasync keeps its own (name-mangled) attribute, asyncio's
    # base loop another.  Unknown loops simply report none.
    executor = getattr(loop, "_QEventLoop__default_executor", None)
    if executor is None:
        executor = getattr(loop, "_default_executor", None)
    return executor


@overload
def asyncify(fn: Callable[P, T], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def asyncify(
    *, pool: str = "io", manager: WorkerManager | None = None
) -> Callable[[Callable[P, T]], Callable[P, Coroutine[Any, Any, T]]]: ...


def asyncify(
    fn: Callable[P, T] | None = None,
    /,
    *,
    pool: str = "io",
    manager: WorkerManager | None = None,
) -> (
    Callable[P, Coroutine[Any, Any, T]]
    | Callable[[Callable[P, T]], Callable[P, Coroutine[Any, Any, T]]]
):
    """Turn a blocking function into a coroutine function that runs it on a manager pool.

    The seed note's ``async_wrap``, on a bounded, named pool instead of the default
    executor.  Each call submits one task and awaits it: the result, or the function's
    exception unchanged; cancelling the awaiting coroutine cancels the task.  A
    function that declares ``ctx`` receives a :class:`TaskContext` (declare it
    ``*, ctx: TaskContext | None = None`` so type checkers accept calls without it);
    the caller's contextvars travel with the call.

    Args:
        fn: The blocking function (when used as a bare ``@asyncify``).
        pool: The pool to run on (default ``"io"``).
        manager: The manager (default: :func:`default_manager`, looked up per call).

    Raises:
        TypeError: ``fn`` is already a coroutine function, or not callable.
        UnknownPoolError: ``manager`` was given and has no such pool.

    Example:
        >>> @asyncify(pool="cpu")                        # doctest: +SKIP
        ... def ocr(image):
        ...     return engine.read(image)
        >>> text = await ocr(screenshot)                 # doctest: +SKIP
    """
    if manager is not None:
        manager.options(pool=pool)  # fail now, at decoration time, on a bad pool name

    def decorate(fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"asyncify() wraps blocking functions; {_name_of(fn)} is already a "
                "coroutine function: await it directly"
            )
        if not callable(fn):
            raise TypeError(f"asyncify() expects a function, got {type(fn).__name__}")
        cache: list[tuple[_ManagerCore, TaskOptions, Callable[..., T]]] = []

        def target() -> tuple[TaskOptions, Callable[..., T]]:
            mgr = manager
            if mgr is None:
                from ._manager import default_manager

                mgr = default_manager()
            core = mgr._core
            if not cache or cache[0][0] is not core:
                opts = mgr.options(pool=pool, name=_name_of(fn))
                # Process pools pickle functions by name; Dask's cloudpickle copes alone.
                by_name = core.pool(pool).kind == "process"
                cache[:] = [(core, opts, _picklable(fn, run) if by_name else fn)]
            return cache[0][1], cache[0][2]

        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            opts, call = target()
            return await opts.submit(call, *args, **kwargs)

        return run

    if fn is not None:
        return decorate(fn)
    return decorate


def _picklable(fn: Callable[..., T], wrapper: Callable[..., Any]) -> Callable[..., T]:
    """What a process pool is sent for ``fn``, the function ``wrapper`` wraps.

    ``@asyncify`` on a module-level function replaces the module's attribute with the
    wrapper, so pickle, which sends functions by name, finds the wrapper there instead
    of ``fn`` and refuses.  The wrapper itself *is* found by that name, and it holds
    ``fn`` as ``__wrapped__``: send a reference to the wrapper and unwrap it in the
    worker.  A function still reachable under its own name is sent as it is.
    """
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    found: Any = module
    for part in getattr(fn, "__qualname__", "").split("."):
        found = getattr(found, part, None)
    if found is fn or found is not wrapper:
        return fn  # by name as usual (or not at all: the pool says why, at submit)
    return cast("Callable[..., T]", _Unwrap(wrapper))


class _Unwrap:
    """Calls ``wrapper.__wrapped__``; pickles as a reference to the (importable) wrapper.

    It exposes the wrapped function's code object, so the pool sees the same
    parameters (``ctx`` included) as for the function itself.
    """

    __slots__ = ("_wrapper",)

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        self._wrapper = wrapper

    @property
    def __code__(self) -> Any:
        return self._wrapper.__wrapped__.__code__  # type: ignore[attr-defined]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[type[_Unwrap], tuple[Callable[..., Any]]]:
        return (_Unwrap, (self._wrapper,))


# -- from any thread to the GUI loop, and sync code calling coroutines ----------------------


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
        if loop is None or _is_qt_loop(loop):
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
        loop = asyncio._get_running_loop() or _known_gui_loop()
        if loop is not None and _is_qt_loop(loop):
            _register_gui_loop(loop)
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

    def cancel_task(done: concurrent.futures.Future[Any]) -> None:
        # Runs on whichever thread cancelled the Future.
        if done.cancelled():
            _cancel_task(task, "cancelled: its concurrent.futures.Future was cancelled")

    target.add_done_callback(cancel_task)


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

    For sync code that must call async code (the seed note's ``_run_async``), without a
    new event loop per call:

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
    target = loop if loop is not None else (_known_gui_loop() if on_gui else None)
    if target is not None and not target.is_running():
        if on_gui or not _is_qt_loop(target):
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


# -- coroutines that belong to widgets ---------------------------------------------------------


class _OwnerTasks:
    """The asyncio tasks started for one owner QObject (async slots, task groups).

    Learns of the owner's death as ``_owners.OwnerRecord`` does, by two paths: the
    ``destroyed`` signal connected directly (it runs inside the destructor on any
    thread, takes no lock; cancelling a task from another thread goes through its loop),
    and a validity check of the owner each time a task is added.
    """

    __slots__ = ("__weakref__", "_alive", "_ref", "key", "tasks")

    def __init__(self, key: int, owner: QObject) -> None:
        self._alive = True
        self._ref = weakref.ref(owner)
        self.key = key
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def alive(self) -> bool:
        if not self._alive:
            return False
        owner = self._ref()
        if owner is None or not shiboken6.isValid(owner):
            self._destroyed()
            return False
        return True

    def add(self, task: asyncio.Task[Any]) -> None:
        if not self.alive:
            _cancel_task(task, "cancelled: its owner was destroyed")
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel_all(self, reason: str) -> None:
        for task in list(self.tasks):
            _cancel_task(task, f"cancelled: {reason}")

    def window_closed(self, reason: str) -> None:
        """The owner's window was closed (``_closing``).  GUI thread."""
        self.cancel_all(reason)

    def _destroyed(self, *_: object) -> None:
        self._alive = False
        if _owner_tasks.get(self.key) is self:
            del _owner_tasks[self.key]
        self.cancel_all("its owner was destroyed")


_owner_tasks: dict[int, _OwnerTasks] = {}


def _tasks_of(owner: QObject) -> _OwnerTasks:
    """The task record of ``owner``, created (and wired to its lifetime) on first use."""
    key = shiboken6.getCppPointer(owner)[0]
    record = _owner_tasks.get(key)
    if record is None or not record.alive:  # a dead object's address, reused
        record = _OwnerTasks(key, owner)
        _owner_tasks[key] = record
        owner.destroyed.connect(record._destroyed, Qt.ConnectionType.DirectConnection)
        watch_window(owner, record)  # a widget's tasks also end when its window closes
    return record


# Tasks of async slots without an owner: asyncio keeps only weak references to tasks,
# so an unreferenced fire-and-forget task could be garbage-collected while it runs.
_loose_tasks: set[asyncio.Task[Any]] = set()


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
    loop = _running_loop(f"async slot {name}")
    task = loop.create_task(fn(*args, **kwargs), name=f"async slot {name}")
    task.add_done_callback(functools.partial(_report_slot_outcome, name, on_error))
    if owner is not None:
        if shiboken6.isValid(owner):
            _tasks_of(owner).add(task)
        else:
            task.cancel("cancelled: its owner was destroyed")
    else:
        _loose_tasks.add(task)
        task.add_done_callback(_loose_tasks.discard)
    return task


def _decorate_slot(
    fn: Callable[..., Coroutine[Any, Any, T]],
    slot_types: tuple[Any, ...],
    on_error: ExcInfoHook | None,
) -> Callable[..., asyncio.Task[T]]:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"@async_slot decorates an 'async def' function; {_name_of(fn)} is not one "
            "(plain functions can be connected to signals directly)"
        )
    capacity = _positional_capacity(fn)
    method = _is_method(fn)
    name = _name_of(fn)

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


class TaskGroup:
    """Structured concurrency bound to a manager (and optionally an owner widget).

    An ``asyncio.TaskGroup`` whose :meth:`submit` runs functions on the manager's
    pools.  When any task fails, the others are cancelled (workers included: queued
    ones are removed, running ones see ``ctx.cancelled``) and the errors are raised
    together as an ``ExceptionGroup`` when the block ends, as with
    ``asyncio.TaskGroup``.  With an ``owner``, destroying it (or closing its window)
    cancels the block and every task in it; the ``async with`` then raises
    ``asyncio.CancelledError``, so no code that touches the gone widget runs.

    Args:
        manager: The manager (default: :func:`default_manager`).
        owner: A QObject (usually the widget); see above.
        pool: The pool :meth:`submit` runs on (default ``"io"``).

    Example:
        >>> async with TaskGroup(manager, owner=self) as group:   # doctest: +SKIP
        ...     models = group.submit(fetch_models, provider)
        ...     quota = group.submit(fetch_quota, provider)
        >>> self.show(models.result(), quota.result())            # doctest: +SKIP
    """

    def __init__(
        self,
        manager: WorkerManager | None = None,
        *,
        owner: QObject | None = None,
        pool: str = "io",
    ) -> None:
        self._manager = manager
        self._owner = check_owner(owner) if owner is not None else None
        self._pool = pool
        self._options: TaskOptions | None = None
        self._group: asyncio.TaskGroup | None = None
        self._host: asyncio.Task[Any] | None = None
        self._record: _OwnerTasks | None = None
        if manager is not None:
            manager.options(pool=pool)  # fail now on a bad pool name

    async def __aenter__(self) -> TaskGroup:
        if self._group is not None:
            raise RuntimeError("this TaskGroup was already entered; create a new one")
        manager = self._manager
        if manager is None:
            from ._manager import default_manager

            manager = default_manager()
        self._options = manager.options(pool=self._pool, owner=self._owner)
        group = self._group = asyncio.TaskGroup()
        await group.__aenter__()
        host = self._host = asyncio.current_task()
        if self._owner is not None and host is not None:
            # The owner's record cancels the host task when the owner goes away; the
            # asyncio.TaskGroup then cancels every child and re-raises the cancellation.
            self._record = _tasks_of(self._owner)
            self._record.add(host)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._group
        assert group is not None
        try:
            await group.__aexit__(exc_type, exc, tb)
        finally:
            if self._record is not None and self._host is not None:
                self._record.tasks.discard(self._host)

    def _entered(self) -> tuple[asyncio.TaskGroup, TaskOptions]:
        if self._group is None or self._options is None:
            raise RuntimeError("enter the group first: 'async with TaskGroup(...) as group:'")
        return self._group, self._options

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Task[T]:
        """Run ``fn(*args, **kwargs)`` on the group's pool; return the awaiting task.

        The task's result is the function's result; cancelling the task (or the group)
        cancels the worker.  Runs on the loop's thread.
        """
        group, options = self._entered()
        handle = options.submit(fn, *args, **kwargs)
        task = group.create_task(_await_handle(handle), name=f"submit {handle.name}")

        def cancel_worker(done: asyncio.Task[T]) -> None:
            # Also covers a task cancelled before its first step (its coroutine never
            # reached the await that would have cancelled the worker).
            if done.cancelled():
                handle.cancel(reason="cancelled: its task group was cancelled")

        task.add_done_callback(cancel_worker)
        return task

    def create_task(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """Start a coroutine in the group (as ``asyncio.TaskGroup.create_task``)."""
        group, _ = self._entered()
        return group.create_task(coro, name=name)


async def _await_handle(handle: TaskHandle[T]) -> T:
    return await handle


async def wait_signal(signal: SignalInstance, timeout: float | None = None) -> tuple[Any, ...]:
    """Wait for the next emission of a Qt signal; return its arguments as a tuple.

    The signal may be emitted on any thread.  The connection is removed afterwards,
    whatever happens.  A signal of a deleted object never comes: pass a timeout.

    Args:
        signal: A bound signal, e.g. ``reply.finished``.
        timeout: Seconds to wait (None: no limit).

    Raises:
        TimeoutError: The signal was not emitted within ``timeout``.

    Example:
        >>> (code,) = await wait_signal(process.finished, timeout=60)  # doctest: +SKIP
    """
    loop = _running_loop("wait_signal()")
    future: asyncio.Future[tuple[Any, ...]] = loop.create_future()
    loop_thread = threading.get_ident()

    def resolve(args: tuple[Any, ...]) -> None:
        if not future.done():
            future.set_result(args)

    def emitted(*args: Any) -> None:
        # Runs in whichever thread Qt calls it from: hop to the loop's thread.
        if threading.get_ident() == loop_thread:
            resolve(args)
        else:
            try:
                loop.call_soon_threadsafe(resolve, args)
            except RuntimeError:  # the loop was closed
                pass

    connection = signal.connect(emitted)
    try:
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(f"the signal was not emitted within {timeout} s") from None
    finally:
        QObject.disconnect(connection)


async def open_dialog(dialog: QDialog, timeout: float | None = None) -> int:
    """Open a modal dialog and wait for its outcome, without a nested ``exec()``.

    ``dialog.exec()`` runs a second event loop inside the caller: under qasync every
    coroutine then runs nested inside it and re-enters code that is still on the stack.
    This opens the dialog (``open()``: window-modal, returns at once) and awaits its
    ``finished`` signal; everything else keeps running normally meanwhile.

    Cancelling the awaiting coroutine (or the timeout) rejects the dialog.  A dialog
    destroyed while open counts as rejected.

    Returns:
        The dialog's result code (``QDialog.DialogCode.Accepted`` is 1).

    Raises:
        TimeoutError: ``timeout`` passed (the dialog was rejected).

    Example:
        >>> if await open_dialog(ConfirmDialog(self)) == QDialog.DialogCode.Accepted:
        ...     await self.save()                                      # doctest: +SKIP
    """
    loop = _running_loop("open_dialog()")
    future: asyncio.Future[int] = loop.create_future()

    def finished(code: int) -> None:
        if not future.done():
            future.set_result(int(code))

    def rejected() -> None:
        if not future.done():
            future.set_result(0)  # QDialog.DialogCode.Rejected

    def destroyed(*_: object) -> None:
        # Direct (see _owners): may run inside the destructor on another thread.
        if _on_loop_thread(loop):
            rejected()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(rejected)

    connections: list[QMetaObject.Connection] = [
        dialog.finished.connect(finished),
        dialog.destroyed.connect(destroyed, Qt.ConnectionType.DirectConnection),
    ]
    dialog.open()
    try:
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            _reject(dialog)
            raise TimeoutError(f"the dialog was not answered within {timeout} s") from None
    except asyncio.CancelledError:
        _reject(dialog)
        raise
    finally:
        for connection in connections:
            QObject.disconnect(connection)


def _reject(dialog: QDialog) -> None:
    if shiboken6.isValid(dialog) and dialog.isVisible():
        dialog.reject()
