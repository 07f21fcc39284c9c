"""Task state, the public ``TaskHandle`` and the ``TaskContext`` a function receives.

A task moves through::

    PENDING ──start──► QUEUED ──worker picks it──► RUNNING ──► SUCCEEDED | FAILED | CANCELLED
                          │                           │
                          └──── cancel / supersede / owner destroyed / shutdown ──► CANCELLED
                                                      └──── timeout ──► FAILED (TaskTimeoutError)

The terminal transition happens exactly once, under the pool's lock, on whichever thread
decides it (the worker thread for a result or error, the caller of ``cancel()``, the
watchdog for a timeout).  Delivery to the GUI thread (signals, continuations) happens
later, once, through the delivery engine.

Cancelling a *running* task ends it at once: it is reported cancelled, its eventual
result is discarded, and ``ctx.cancelled`` turns True so the function can return early.
Python cannot interrupt a thread, so until the function returns its thread stays busy
(``PoolStatistics.abandoned`` counts such threads).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Generator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar, cast

import shiboken6
from PySide6.QtCore import QObject, QThread, QTimer

from ._engine import DeliveryEngine, report_callback_exception
from ._errors import BlockingCallError, TaskCancelledError, TaskTimeoutError
from ._introspect import PLAIN, WANTS_CTX, call_mode
from ._signals import WorkerSignals
from ._state import TaskState

if TYPE_CHECKING:
    from ._manager import _ManagerCore
    from ._owners import OwnerRecord
    from ._pool import Pool

__all__ = ("TaskContext", "TaskError", "TaskHandle", "TaskState")

logger = logging.getLogger("casare_workers")
#: Where failures that nothing retrieved are reported (a child of the library's logger).
unretrieved_logger = logging.getLogger("casare_workers.unretrieved")

T = TypeVar("T")

_ids = itertools.count(1)
# Used by tasks that do not belong to a pool (a Worker handed to a foreign QThreadPool).
_loose_lock = threading.Lock()


_PENDING, _QUEUED, _RUNNING = TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _FAILED, _CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED


@dataclass(frozen=True, slots=True)
class TaskError:
    """What the ``error`` signal carries: the exception and its formatted traceback.

    Attributes:
        exception: The exception object the function raised, unchanged.
        traceback: The traceback formatted as text (``traceback.format_exception``).
        task_id: The failed task's id.
        task_name: The failed task's name.
    """

    exception: BaseException
    traceback: str
    task_id: int = 0
    task_name: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, task_id: int = 0, name: str = "") -> TaskError:
        """Build a ``TaskError`` for ``exc``, formatting its traceback now."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(exc, text, task_id, name)

    def __str__(self) -> str:
        return f"{type(self.exception).__name__}: {self.exception}"


class TaskContext:
    """The object a task function receives when it declares a parameter named ``ctx``.

    Every method is cheap and may be called from the worker thread as often as wanted:
    progress is coalesced (latest value wins, at most one GUI update per frame).

    Example:
        >>> def copy_files(paths, ctx):
        ...     for i, path in enumerate(paths):
        ...         ctx.raise_if_cancelled()
        ...         ctx.status(f"copying {path}")
        ...         shutil.copy(path, backup_dir)
        ...         ctx.progress(i + 1, len(paths))
    """

    __slots__ = ("_task",)

    def __init__(self, task: TaskHandle[Any]) -> None:
        self._task = task

    def progress(self, current: int, total: int = 0) -> None:
        """Report progress ``current`` of ``total`` (``total <= 0``: unknown).  Any thread."""
        task = self._task
        if current.__class__ is not int or total.__class__ is not int:
            current, total = _coerce_progress(current, total)
        task._progress = (current, total)
        if not task._progress_dirty:
            task._progress_dirty = True
            task._engine.mark_dirty(task)

    def status(self, text: str) -> None:
        """Report a short status text (coalesced like progress).  Any thread."""
        task = self._task
        task._status = str(text)
        if not task._progress_dirty:
            task._progress_dirty = True
            task._engine.mark_dirty(task)

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, superseded, timed out, shut down or orphaned.

        "Orphaned" means its owner QObject was destroyed.
        """
        task = self._task
        owner = task._owner
        return task._cancel_requested or (owner is not None and not owner.alive)

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelledError`` if :attr:`cancelled`; the task then ends cancelled."""
        if self.cancelled:
            raise TaskCancelledError(f"task {self._task.name!r} was cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancellation.

        Returns:
            True if the task was cancelled (stop now), False if the time ran out.
        """
        if self.cancelled:
            return True
        return self._task._cancel_event().wait(timeout) or self.cancelled

    @property
    def task_id(self) -> int:
        """The id of the running task."""
        return self._task.id

    @property
    def name(self) -> str:
        """The name of the running task."""
        return self._task.name


def _coerce_progress(current: object, total: object) -> tuple[int, int]:
    try:
        return int(cast(Any, current)), int(cast(Any, total))
    except (TypeError, ValueError):
        raise TypeError(
            f"ctx.progress(current, total) takes two integers, got {current!r} and {total!r}"
        ) from None


class _ProgressCallback:
    """The tutorial's ``progress_callback`` argument: ``.emit(n)`` or ``(n)``."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx

    def emit(self, current: int, total: int = 100) -> None:
        """Report progress like the tutorial's ``progress_callback.emit(percent)``."""
        self._ctx.progress(current, total)

    __call__ = emit


# A continuation: (on_result, on_error, on_cancelled, context, has_context).
_Continuation = tuple[
    Callable[[Any], object] | None,
    Callable[["TaskError"], object] | None,
    Callable[[], object] | None,
    QObject | None,
    bool,
]


class TaskHandle(Generic[T]):
    """A submitted task: its state, its signals, its result, and how to cancel it.

    Returned by ``WorkerManager.submit``/``start``.  Thread-safe; the blocking methods
    (:meth:`result`, :meth:`exception`, :meth:`wait`) are meant for non-GUI threads and
    refuse to freeze the GUI thread without a timeout.

    Example:
        >>> handle = manager.submit(fetch_models, provider)      # doctest: +SKIP
        >>> handle.then(self.show_models, self.show_error, context=self)  # doctest: +SKIP
        >>> handle.cancel()                                      # doctest: +SKIP
    """

    # One slotted object per task (no instance dict): a task is created on the submit
    # hot path and every object it allocates is more work for the cyclic GC.
    __slots__ = (
        "__weakref__",
        "_args",
        "_callbacks",
        "_cancel_ev",
        "_cancel_requested",
        "_context",
        "_ctx_mode",
        "_delivery",
        "_done_callbacks",
        "_done_event",
        "_emitted_progress",
        "_emitted_status",
        "_ended_at",
        "_engine",
        "_exc",
        "_finished",
        "_fn",
        "_future",
        "_hooks",
        "_key",
        "_kwargs",
        "_lock",
        "_manager",
        "_owner",
        "_pool",
        "_priority",
        "_progress",
        "_progress_dirty",
        "_ran",
        "_signals",
        "_started_at",
        "_started_emitted",
        "_started_posted",
        "_state",
        "_status",
        "_timeout",
        "_unretrieved",
        "_value",
        "_waited",
        "cancel_reason",
        "id",
        "name",
    )

    def __init__(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        engine: DeliveryEngine,
        name: str | None = None,
        signals: WorkerSignals | None = None,
    ) -> None:
        self.id = next(_ids)
        self.name = name if name is not None else _name_of(fn)
        self.cancel_reason: str | None = None
        self._fn: Callable[..., T] | None = fn
        self._args: tuple[Any, ...] | None = args
        self._kwargs: dict[str, Any] | None = kwargs
        self._ctx_mode = call_mode(fn)
        self._engine = engine
        self._signals = signals
        self._state = _PENDING
        self._finished = False
        self._lock: threading.Lock = _loose_lock
        self._pool: Pool | None = None
        self._manager: _ManagerCore | None = None
        self._owner: OwnerRecord | None = None
        self._key: object = None
        self._priority = 0
        self._timeout: float | None = None
        self._value: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[_Continuation] | None = None
        self._done_callbacks: list[Callable[[TaskHandle[Any]], object]] | None = None
        self._done_event: threading.Event | None = None
        self._cancel_ev: threading.Event | None = None
        self._future: Future[Any] | None = None
        # The submitter's contextvars travel with the work, as with asyncio.to_thread:
        # a copy (O(1)) entered once by the worker (~0.3 µs per task in all), which also
        # keeps one task's context changes from leaking into the next on that thread.
        self._context = contextvars.copy_context()
        self._cancel_requested = False
        self._progress: tuple[int, int] | None = None
        self._status: str | None = None
        self._emitted_progress: tuple[int, int] | None = None
        self._emitted_status: str | None = None
        self._progress_dirty = False
        self._ran = False
        self._started_posted = False
        self._started_emitted = False
        # 0: not delivered; 1: delivering (the outcome's signals are being emitted, and
        # a slot may be running a nested event loop); 2: delivered.
        self._delivery = 0
        # Run on the GUI thread once delivery is complete (awaiters on the Qt loop).
        self._hooks: list[Callable[[], object]] | None = None
        # Set when the task failed and nothing took note of the failure (see _deliver).
        self._unretrieved: _Unretrieved | None = None
        self._waited = False  # a done callback (an awaiter, a Future) takes the outcome
        self._started_at = 0.0
        self._ended_at = 0.0

    # -- read-only view ---------------------------------------------------------------

    @property
    def state(self) -> TaskState:
        """The current :class:`TaskState` (decided on the worker thread, not delivered)."""
        return self._state

    @property
    def pool(self) -> str | None:
        """The name of the pool the task runs on (None for a loose ``Worker``)."""
        return self._pool.name if self._pool is not None else None

    @property
    def key(self) -> object:
        """The supersede key the task was submitted with, or None."""
        return self._key

    @property
    def owner(self) -> QObject | None:
        """The owner QObject, while it is alive; None if none was given or it is gone."""
        return self._owner.get() if self._owner is not None else None

    @property
    def priority(self) -> int:
        """The priority the task was queued with (higher runs first)."""
        return self._priority

    @property
    def progress(self) -> tuple[int, int] | None:
        """The latest ``(current, total)`` the function reported, or None."""
        return self._progress

    @property
    def status_text(self) -> str | None:
        """The latest status text the function reported, or None."""
        return self._status

    @property
    def elapsed(self) -> float:
        """Seconds the task has been running (or ran), 0.0 if it never started."""
        if not self._started_at:
            return 0.0
        end = self._ended_at or time.perf_counter()
        return max(0.0, end - self._started_at)

    @property
    def error(self) -> TaskError | None:
        """The :class:`TaskError` of a failed task, else None."""
        if self._state is _FAILED and self._exc is not None:
            self._retrieved()
            return TaskError.from_exception(self._exc, self.id, self.name)
        return None

    def done(self) -> bool:
        """True once the task succeeded, failed or was cancelled."""
        return self._finished

    def running(self) -> bool:
        """True while a worker is running the function."""
        return self._state is _RUNNING

    def delivered(self) -> bool:
        """True once the outcome reached the GUI thread: signals emitted, continuations run.

        ``done()`` turns True on the thread that ends the task; ``delivered()`` when the
        GUI thread has caught up with it (what tests usually wait for).
        """
        return self._delivery == 2

    def cancelled(self) -> bool:
        """True if the task ended cancelled."""
        return self._state is _CANCELLED

    @property
    def signals(self) -> WorkerSignals:
        """The task's :class:`WorkerSignals`, created on first access.

        Connect right after ``submit`` (before control returns to the event loop) and
        you receive every signal: deliveries only happen when the GUI thread runs the
        event loop.  Connecting costs a QObject (~10 µs); ``then()`` is the cheap path.
        The object is released once ``finished`` has been emitted (so slots that close
        over the handle do not keep it alive); after that this returns a fresh object
        that will never emit.
        """
        sig = self._signals
        if sig is None:
            sig = WorkerSignals()
            if not self._engine.is_gui_thread():
                sig.moveToThread(self._engine.thread())
            with self._lock:
                if self._signals is None:
                    self._signals = sig
                    post_started = self._state is _RUNNING and not self._started_posted
                    self._started_posted = self._started_posted or post_started
                else:
                    sig, post_started = self._signals, False
            if post_started:
                self._engine.post(self._deliver_started)
        return sig

    # -- cancellation -----------------------------------------------------------------

    def cancel(self, *, reason: str = "cancelled") -> bool:
        """Cancel the task.  Thread-safe.

        A queued task is removed and never runs.  A running task ends *now* as
        cancelled: its result will never be delivered, ``ctx.cancelled`` turns True so
        the function can stop early; its thread is busy until the function returns.

        ``reason`` is keyword-only so that ``button.clicked.connect(handle.cancel)`` works
        (PySide would otherwise pass ``clicked``'s ``checked`` flag as the reason).

        Returns:
            True if this call cancelled the task, False if it had already ended.
        """
        return self._settle(_CANCELLED, None, None, reason)

    def _request_cancel(self) -> None:
        self._cancel_requested = True
        ev = self._cancel_ev
        if ev is not None:
            ev.set()

    def _cancel_event(self) -> threading.Event:
        return _cancel_event_of(self)

    # -- blocking access (non-GUI threads) ---------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task ends or ``timeout`` seconds pass; return ``done()``.

        Raises:
            BlockingCallError: Called on the GUI thread with no timeout while the task is
                still running (that would freeze the window); or, with no timeout, by a
                worker thread of the task's own pool when every thread of that pool
                would then be blocked on the pool's own tasks (a deadlock).
        """
        if self._finished:
            return True
        if timeout is None and self._engine.is_gui_thread():
            raise BlockingCallError(
                f"waiting for task {self.name!r} on the GUI thread with no timeout would "
                "freeze the window: connect to handle.signals, use handle.then(...), "
                "'await handle' in a coroutine, or pass an explicit timeout"
            )
        ev = self._done_event
        if ev is None:
            with self._lock:
                if self.done():  # re-check under the lock (it may have ended meanwhile)
                    return True
                ev = self._done_event
                if ev is None:
                    ev = self._done_event = threading.Event()
        if timeout is None:
            # A worker blocking on its own pool's queue may be waiting for ever: the
            # pool knows (see ThreadPool.wait_from_worker).
            wait_from_worker = getattr(self._pool, "wait_from_worker", None)
            if wait_from_worker is not None:
                return bool(wait_from_worker(self, ev))
        return ev.wait(timeout)

    def result(self, timeout: float | None = None) -> T:
        """Return the function's result, blocking up to ``timeout`` seconds.

        Raises:
            Exception: The function's own exception, unchanged (traceback included).
            TaskCancelledError: The task was cancelled.
            TimeoutError: The task did not finish in time (it keeps running).
            BlockingCallError: See :meth:`wait`.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.name!r} did not finish within {timeout} s")
        state = self._state
        if state is _SUCCEEDED:
            return cast(T, self._value)
        if state is _CANCELLED:
            raise TaskCancelledError(f"task {self.name!r} was {self.cancel_reason or 'cancelled'}")
        exc = self._exc
        assert exc is not None
        self._retrieved()
        raise exc

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the function's exception (None if it succeeded), blocking like :meth:`result`.

        Raises:
            TaskCancelledError: The task was cancelled.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.name!r} did not finish within {timeout} s")
        if self._state is _CANCELLED:
            raise TaskCancelledError(f"task {self.name!r} was {self.cancel_reason or 'cancelled'}")
        self._retrieved()
        return self._exc

    def _retrieved(self) -> None:
        note = self._unretrieved
        if note is not None:
            note.retrieved = True

    @property
    def future(self) -> Future[T]:
        """A ``concurrent.futures.Future`` mirroring this task (created on first access).

        Cancelling the Future cancels the task.  Its callbacks run on the thread that
        ends the task, as with any ``concurrent.futures.Future``.
        """
        fut = self._future
        if fut is None:
            created = False
            with self._lock:
                fut = self._future
                if fut is None:
                    fut = self._future = _ViewFuture(self)
                    created = self._finished
            if created:  # ended before anyone asked: mirror the outcome now
                _mirror_into(fut, self)
        return fut

    def add_done_callback(self, fn: Callable[[TaskHandle[T]], object]) -> None:
        """Call ``fn(handle)`` on the thread that ends the task (or now if it has ended).

        This is the low-level hook (used by the asyncio bridge); GUI code wants
        :meth:`then` or the signals, which run on the GUI thread.
        """
        if not callable(fn):
            _reject_callbacks(fn=fn)
        self._waited = True
        with self._lock:
            if not self._finished:
                if self._done_callbacks is None:
                    self._done_callbacks = []
                self._done_callbacks.append(fn)
                return
        _call_done_callback(fn, self)

    def __await__(self) -> Generator[Any, None, T]:
        """``await handle`` in a coroutine: the result, or the function's exception unchanged.

        Works on the GUI thread's qasync loop (resolved by the delivery engine's drain:
        one coalesced wake-up) and on asyncio loops in other threads.  Cancelling the
        awaiting coroutine cancels the task; a task cancelled elsewhere raises
        ``asyncio.CancelledError`` in the awaiter.  See ``casare_workers._asyncio``.
        """
        # The bridge builds on the core, not the other way round: imported on use.
        from ._asyncio import await_task

        return await_task(self)

    # -- continuations on the GUI thread ------------------------------------------------

    def then(
        self,
        on_result: Callable[[T], object] | None = None,
        on_error: Callable[[TaskError], object] | None = None,
        on_cancelled: Callable[[], object] | None = None,
        *,
        context: QObject | None = None,
    ) -> TaskHandle[T]:
        """Run a callback when the task ends, on the GUI thread (or ``context``'s thread).

        Exactly one of the three callbacks runs (if given).  If ``context`` (default:
        the task's owner) has been destroyed by then, none runs; a continuation with an
        explicit, live ``context`` still learns that an owned task was cancelled because
        its owner died.  Cheaper than
        connecting to ``signals`` (no QObject per task).  Exceptions raised by the
        callbacks are logged by the ``casare_workers`` logger; delivery goes on.

        Returns:
            This handle, so calls can be chained.

        Raises:
            TypeError: A callback is not callable, or ``context`` is not a QObject.
            ValueError: ``context`` lives in a thread that runs no Qt event loop (a pool
                thread, a plain ``threading.Thread``, a finished ``QThread``): the
                callback could never run there.
        """
        if context is not None:
            _check_context(context, self._engine)
        # Checked here: a non-callable would otherwise only surface as a logged
        # "'int' object is not callable" when the task ends, far from the mistake.
        if (
            (on_result is not None and not callable(on_result))
            or (on_error is not None and not callable(on_error))
            or (on_cancelled is not None and not callable(on_cancelled))
        ):
            _reject_callbacks(on_result=on_result, on_error=on_error, on_cancelled=on_cancelled)
        cont: _Continuation = (on_result, on_error, on_cancelled, context, context is not None)
        with self._lock:
            if not self._delivery:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(cont)
                return self
        self._engine.post(lambda: self._run_continuation(cont))
        return self

    def _when_delivered(self, hook: Callable[[], object]) -> None:
        """Run ``hook()`` once the outcome has been delivered.  GUI thread only.

        Runs now if delivery is complete; otherwise at its end, after ``finished`` and
        the continuations, even when a slot is still inside a nested event loop.
        """
        if self._delivery == 2:
            hook()
        elif self._hooks is None:
            self._hooks = [hook]
        else:
            self._hooks.append(hook)

    # -- worker side --------------------------------------------------------------------

    @property
    def _task(self) -> TaskHandle[T]:
        """The task a pool item belongs to (a task is its own item)."""
        return self

    def _begin(self, *, watch: bool = True) -> bool:
        """Move a queued (or pending) task to RUNNING; False if it must not run.

        Called by whichever thread is about to run (or ship) the work, without the
        pool's lock.  A task cancelled meanwhile is left alone; one whose owner died is
        cancelled.  Posts ``started`` when anyone listens and arms the timeout (unless
        ``watch`` is False: a process pool arms it once the worker process is up).
        """
        owner = self._owner
        if owner is not None and not owner.alive:
            self.cancel(reason="owner destroyed")  # never start work for a dead widget
            return False
        with self._lock:
            state = self._state
            if state is not _QUEUED and state is not _PENDING:
                return False
            self._state = _RUNNING
            pool = self._pool
            if pool is not None:
                pool.count_started()
            manager = self._manager
            post_started = self._signals is not None or (
                manager is not None and manager._wants_started
            )
            self._started_posted = post_started
        self._started_at = time.perf_counter()
        self._ran = True
        if post_started:
            self._engine.post(self._deliver_started)
        if watch and self._timeout is not None and manager is not None:
            manager._watchdog.watch(self, self._timeout)
        return True

    def _pool_run(self) -> None:
        """Run the task on the current (worker) thread.  Called by the pool."""
        if not self._begin():
            return
        try:
            value = self._invoke()
        except TaskCancelledError as exc:
            self._release_inputs()
            owner = self._owner
            if self._cancel_requested or (owner is not None and not owner.alive):
                self._settle(_CANCELLED, None, None)
            else:
                self._settle(_FAILED, None, exc)
        except BaseException as exc:
            self._release_inputs()
            self._settle(_FAILED, None, exc)
        else:
            self._release_inputs()
            if isinstance(value, QObject):
                try:
                    _hand_over_to_gui(value, self._engine.thread(), f"task {self.name!r}")
                except TypeError as exc:
                    self._settle(_FAILED, None, exc)
                    return
            self._settle(_SUCCEEDED, value, None)

    def _release_inputs(self) -> None:
        """Drop the function and its arguments now that the call ended (worker thread).

        As an executor does, so that nothing the call needed outlives it.  If a QObject
        is among them (the function's ``self`` included) they are kept until the
        delivery on the GUI thread instead: the last reference to a QObject must never
        be dropped on a worker thread.
        """
        fn, args, kwargs = self._fn, self._args, self._kwargs
        if _holds_qobject(fn, args, kwargs):
            return
        self._fn = self._args = self._kwargs = None

    def _invoke(self) -> T:
        fn, args, kwargs = self._fn, self._args, self._kwargs
        assert fn is not None
        assert args is not None
        assert kwargs is not None
        mode = self._ctx_mode
        run = self._context.run
        if mode == PLAIN:
            return run(fn, *args, **kwargs) if kwargs else run(fn, *args)
        ctx = TaskContext(self)
        if mode == WANTS_CTX:
            return run(fn, *args, ctx=ctx, **kwargs)
        return run(fn, *args, progress_callback=_ProgressCallback(ctx), **kwargs)

    def _timed_out(self) -> None:
        """Called by the watchdog when the timeout passes (watchdog thread)."""
        if self._state is not _RUNNING:
            return
        # A pool that can stop the work (a process pool) says what happens instead.
        fate = getattr(self._pool, "timeout_fate", None) or (
            "its thread keeps running until the function returns (Python threads cannot "
            "be killed), its result will be discarded"
        )
        self._settle(
            _FAILED,
            None,
            TaskTimeoutError(
                f"task {self.name!r} ran longer than its timeout of {self._timeout} s; {fate}"
            ),
            stop=True,
        )

    def _settle(
        self,
        state: TaskState,
        value: Any,
        exc: BaseException | None,
        reason: str = "cancelled",
        *,
        stop: bool = False,
    ) -> bool:
        """Make the one terminal transition; False if the task had already ended.

        Whoever decides the outcome calls this: the worker (result, error), a
        canceller, the watchdog (``stop=True``: a timeout also asks the work to stop).
        The outcome is recorded *before* the work is asked to stop, so a function that
        returns early because it saw ``ctx.cancelled`` can never deliver that stale
        value: its own ``_settle`` comes second and changes nothing.
        """
        owner = self._owner
        if owner is not None and not owner.alive and state is not _CANCELLED:
            # The owner died first: whatever the function produced goes nowhere.
            state, value, exc, reason = _CANCELLED, None, None, "owner destroyed"
        with self._lock:
            if self._finished:
                return False
            previous = self._state
            self._state = state
            self._finished = True
            if state is _CANCELLED:
                self.cancel_reason = reason
            self._value = value
            self._exc = exc
            pool = self._pool
            if pool is not None:
                pool.count_settled(previous, state)
            done_event = self._done_event
            future = self._future
            done_callbacks = self._done_callbacks
            self._done_callbacks = None
        self._ended_at = time.perf_counter()
        try:
            if state is _CANCELLED or stop:
                self._request_cancel()
                if pool is not None and previous is not _PENDING:
                    pool.on_cancel(self, previous is _RUNNING)
            if done_event is not None:
                done_event.set()
            if future is not None:
                try:
                    _mirror_into(future, self)
                except BaseException as exc:  # Future runs its callbacks, catching Exception
                    report_callback_exception(f"a done callback of task {self.name!r}", exc)
            if done_callbacks:
                for fn in done_callbacks:
                    _call_done_callback(fn, self)
        finally:
            # Whatever a callback raised (even KeyboardInterrupt), the outcome is
            # delivered: every task ends with exactly one of result/error/cancelled.
            self._engine.post_item(self)
        return True

    # -- GUI side (run by the delivery engine) --------------------------------------------

    def _owner_alive(self) -> bool:
        owner = self._owner
        return owner is None or owner.alive

    def _deliver_started(self) -> None:
        if self._delivery or self._started_emitted:
            return
        self._started_emitted = True
        if not self._owner_alive():
            return
        sig = self._signals
        if sig is not None:
            sig.started._fire(())
        manager = self._manager
        if manager is not None and manager._wants_started:
            manager._task_started(self)

    def _flush_progress(self) -> None:
        if self._delivery:
            return
        self._emit_progress()

    def _emit_progress(self) -> None:
        self._progress_dirty = False
        sig = self._signals
        if sig is None or not self._owner_alive():
            return
        if not self._started_emitted:
            self._deliver_started()  # started always precedes progress
        progress = self._progress
        if progress is not None and progress != self._emitted_progress:
            self._emitted_progress = progress
            sig.progress._fire(progress)
        status = self._status
        if status is not None and status != self._emitted_status:
            self._emitted_status = status
            sig.status._fire((status,))

    def _deliver(self) -> None:
        """Emit the outcome and run the continuations.  GUI thread, exactly once.

        Marked as delivering *before* anything is emitted: a slot that runs a nested
        event loop (a modal dialog) lets the engine drain again, and neither that drain
        nor an awaiter may deliver this task a second time or emit progress after its
        outcome.
        """
        with self._lock:
            if self._delivery:
                return
            self._delivery = 1
            callbacks = self._callbacks
            self._callbacks = None
        owner = self._owner
        alive = owner is None or owner.alive
        manager = self._manager
        sig = self._signals
        if self._state is _FAILED and not self._observed(sig, callbacks):
            self._note_unretrieved()
        try:
            if alive:
                if (
                    self._ran
                    and not self._started_emitted
                    and (sig is not None or (manager is not None and manager._wants_started))
                ):
                    self._started_emitted = True
                    if sig is not None:
                        sig.started._fire(())
                    if manager is not None and manager._wants_started:
                        manager._task_started(self)
                if self._progress_dirty:
                    self._emit_progress()
                if sig is not None:
                    state = self._state
                    if state is _SUCCEEDED:
                        sig.result._fire((self._value,))
                    elif state is _FAILED:
                        assert self._exc is not None
                        sig.error._fire((TaskError.from_exception(self._exc, self.id, self.name),))
                    else:
                        sig.cancelled._fire(())
                    sig.finished._fire(())
        finally:
            # Nothing is emitted after finished: the ports drop their callables, and the
            # handle its QObject, here on the GUI thread (a slot closing over the handle
            # would otherwise keep both alive).
            if sig is not None:
                sig._drop_connections()
            self._signals = None
        if callbacks is not None:
            for cont in callbacks:
                if cont[4] or self._state is not _SUCCEEDED or not alive:
                    self._run_continuation(cont)  # checks the context or the owner
                    continue
                on_result = cont[0]  # the common case, inlined: a result, no context
                if on_result is not None:
                    try:
                        on_result(self._value)
                    except BaseException as exc:
                        report_callback_exception(f"a continuation of task {self.name!r}", exc)
        # Whatever the worker kept (a QObject among the arguments) is dropped here, on
        # the GUI thread.
        self._release_on_gui_thread()
        self._delivery = 2
        hooks = self._hooks
        if hooks is not None:
            self._hooks = None
            for hook in hooks:
                try:
                    hook()
                except BaseException as exc:
                    report_callback_exception(f"an awaiter of task {self.name!r}", exc)
        if manager is not None:
            manager._task_delivered(self)

    def _release_on_gui_thread(self) -> None:
        self._fn = self._args = self._kwargs = None

    def _observed(self, sig: WorkerSignals | None, callbacks: list[_Continuation] | None) -> bool:
        """True if something takes note of this task's failure at delivery."""
        if sig is not None and sig.error._connected():
            return True
        if callbacks is not None and any(cont[1] is not None for cont in callbacks):
            return True
        # A Future, an awaiter or a done callback receives the exception itself.
        return self._future is not None or self._hooks is not None or self._waited

    def _note_unretrieved(self) -> None:
        """Log the failure when this handle is freed, unless it is retrieved by then.

        As asyncio does for a future whose exception nobody retrieved: a fire-and-forget
        task that fails must not vanish without a word, but a failure read later
        (``handle.result()``, ``handle.error``) is not reported.
        """
        exc = self._exc
        assert exc is not None
        note = self._unretrieved = _Unretrieved(self.name, exc)
        weakref.finalize(self, note.report).atexit = False

    def _run_continuation(self, cont: _Continuation) -> None:
        on_result, on_error, on_cancelled, context, has_context = cont
        if has_context:
            if context is None or not shiboken6.isValid(context):
                return
        elif not self._owner_alive():
            return
        state = self._state
        call: Callable[[], object] | None
        if state is _SUCCEEDED:
            value = self._value
            call = None if on_result is None else (lambda: on_result(value))
        elif state is _FAILED:
            exc = self._exc
            assert exc is not None
            call = (
                None
                if on_error is None
                else (lambda: on_error(TaskError.from_exception(exc, self.id, self.name)))
            )
        else:
            call = on_cancelled
        if call is None:
            return
        if context is not None and context.thread() is not QThread.currentThread():
            thread = context.thread()
            once = _ContextCall(call, self.name, thread)
            if not thread.isFinished():
                # Closures, not the object or its bound method: PySide mishandles a bound
                # method of a slotted object given to singleShot (its self arrives wrong).
                QTimer.singleShot(0, context, lambda: once.run())
                if _runs_events(thread):
                    return
                # No event loop there now: a QThread still starting, or a thread that
                # never runs one.  A second path makes sure the callback is not dropped.
                QTimer.singleShot(
                    CONTEXT_GRACE_MS, self._engine.receiver(), lambda: once.fallback()
                )
                return
            once.fallback()
            return
        try:
            call()
        except BaseException as exc:
            report_callback_exception(f"a continuation of task {self.name!r}", exc)

    def __repr__(self) -> str:
        pool = f" pool={self.pool!r}" if self._pool is not None else ""
        return f"<TaskHandle #{self.id} {self.name!r} {self._state.value}{pool}>"


class _Unretrieved:
    """The failure of a task that nothing took note of (see ``_note_unretrieved``).

    Holds the traceback as text, not the exception: the exception's traceback reaches
    the task's frames and so the handle, which would keep the handle alive for ever
    through its own finalizer.
    """

    __slots__ = ("name", "retrieved", "text")

    def __init__(self, name: str, exc: BaseException) -> None:
        self.name = name
        self.text = "".join(traceback.format_exception(exc)).rstrip()
        self.retrieved = False

    def report(self) -> None:
        if not self.retrieved:
            unretrieved_logger.error(
                "task %r failed and nothing retrieved its exception (no error slot, "
                "no then(on_error=...), no result() or await):\n%s",
                self.name,
                self.text,
            )


#: Milliseconds a continuation waits for its context's thread to run an event loop.
CONTEXT_GRACE_MS = 1000


class _ContextCall:
    """A continuation posted to its context's thread, run exactly once.

    If that thread never runs an event loop (it ended, or it is a thread Qt adopted),
    :meth:`fallback` runs it on the GUI thread with a warning instead of dropping it.
    """

    __slots__ = ("call", "lock", "name", "ran", "thread")

    def __init__(self, call: Callable[[], object], name: str, thread: QThread) -> None:
        self.call = call
        self.name = name
        self.thread = thread
        self.lock = threading.Lock()
        self.ran = False

    def _claim(self) -> bool:
        with self.lock:
            if self.ran:
                return False
            self.ran = True
            return True

    def run(self) -> None:
        """Runs on the context's thread."""
        if self._claim():
            _guarded(self.call, self.name)()

    def fallback(self) -> None:
        """Runs on the GUI thread once the grace period is over."""
        with contextlib.suppress(RuntimeError):  # the thread object is gone: it ended
            if not self.thread.isFinished() and _runs_events(self.thread):
                return  # its loop runs now: the posted call will be run there
        if self._claim():
            logger.warning(
                "task %r: the thread of then()'s context runs no event loop; running its "
                "continuation on the GUI thread instead",
                self.name,
            )
            _guarded(self.call, self.name)()


def _guarded(call: Callable[[], object], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except BaseException as exc:
            report_callback_exception(f"a continuation of task {name!r}", exc)

    return run


def _runs_events(thread: QThread) -> bool:
    """False for a thread that cannot run a Qt event loop now or later.

    A finished ``QThread``, or a running thread with no event dispatcher: a thread Qt
    adopted (a pool thread, a plain ``threading.Thread``), which never runs one.  A
    ``QThread`` not started yet counts as able (its loop starts with it).
    """
    if thread.isFinished():
        return False
    if not thread.isRunning():
        return True
    try:
        return thread.eventDispatcher() is not None
    except RuntimeError:  # a stale wrapper of a dispatcher: there is one
        return True


def _check_context(context: object, engine: DeliveryEngine) -> None:
    """Validate ``then(context=...)``: a QObject whose thread can run the callback.

    Refused when that is certain now: the context's thread has finished, or it is the
    calling thread and runs no event loop (then() called on a pool thread with an object
    made there).  A thread that merely has no loop *yet* (a ``QThread`` starting) is
    accepted; the delivery checks again and runs the callback on the GUI thread, with a
    warning, rather than drop it.
    """
    if not isinstance(context, QObject):
        raise TypeError(
            f"then(context=...) must be a QObject whose thread runs the callback, "
            f"got {type(context).__name__}"
        )
    thread = context.thread()
    if thread is engine.thread():
        return
    if thread.isFinished() or (thread is QThread.currentThread() and not _runs_events(thread)):
        raise ValueError(
            f"then(context={context!r}): that object lives in a thread that runs no Qt "
            "event loop (a pool thread, a plain threading.Thread or a finished QThread), "
            "so the callback could never run there; pass a context that lives on the GUI "
            "thread or in a QThread running its event loop, or omit context"
        )


def _hand_over_to_gui(value: QObject, gui: QThread, what: str) -> None:
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


def _holds_qobject(
    fn: object, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None
) -> bool:
    """True if a QObject is the function's ``self`` or a top-level argument."""
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


class _Stoppable(Protocol):
    def cancel(self) -> bool: ...
    def running(self) -> bool: ...


class _Outcome(Protocol):
    _state: TaskState
    _value: Any
    _exc: BaseException | None


class _Cancellable(Protocol):
    _cancel_ev: threading.Event | None
    _cancel_requested: bool
    _lock: threading.Lock


def _cancel_event_of(source: _Cancellable) -> threading.Event:
    """The event a ``ctx.wait()`` sleeps on, made on first use (most tasks never sleep).

    Shared by tasks and long jobs.  Set at once if a cancel came first: the canceller
    only sets an event that already exists.
    """
    ev = source._cancel_ev
    if ev is None:
        with source._lock:
            ev = source._cancel_ev
            if ev is None:
                ev = source._cancel_ev = threading.Event()
    if source._cancel_requested:
        ev.set()
    return ev


class _ViewFuture(Future[T]):
    """A ``Future`` view of a task or a long job; ``cancel()`` asks the source to stop.

    It stays pending until the source has really ended (running work cannot be undone
    at once), then mirrors the outcome: result, exception or cancelled.  ``running()``
    reports the source's own state.  Unlike a ``concurrent.futures`` future, cancelling
    a running one succeeds: the source ends cancelled at once (see ``TaskHandle.cancel``).
    """

    def __init__(self, source: _Stoppable) -> None:
        super().__init__()
        # Dropped once mirrored: the source holds this view, and a cycle between them
        # would keep the result alive until a garbage collection.
        self._source: _Stoppable | None = source

    def cancel(self) -> bool:
        source = self._source
        if self.done() or source is None:
            return super().cancel()
        source.cancel()
        return self.cancelled()

    def running(self) -> bool:
        source = self._source
        return source is not None and not self.done() and source.running()


def _mirror_into(fut: Future[Any], source: _Outcome) -> None:
    """Give ``fut`` the ended ``source``'s outcome (idempotent)."""
    if isinstance(fut, _ViewFuture):
        fut._source = None
    state = source._state
    try:
        if state is _SUCCEEDED:
            fut.set_result(source._value)
        elif state is _FAILED:
            assert source._exc is not None
            fut.set_exception(source._exc)
        elif state is _CANCELLED:
            Future.cancel(fut)
            fut.set_running_or_notify_cancel()
    except InvalidStateError:
        pass


def _call_done_callback(fn: Callable[[Any], object], handle: TaskHandle[Any]) -> None:
    try:
        fn(handle)
    except BaseException as exc:
        report_callback_exception(f"a done callback of task {handle.name!r}", exc)


def _name_of(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is not None:
            return _name_of(inner)
        return type(fn).__name__
    return str(name)


def _reject_callbacks(**given: object) -> NoReturn:
    """Raise the TypeError naming the first argument that is neither callable nor None."""
    name, value = next((n, v) for n, v in given.items() if v is not None and not callable(v))
    raise TypeError(
        f"{name} must be a callable (a function or a bound method) or None, got {value!r} "
        f"({type(value).__name__}); pass the function itself, without calling it"
    )
