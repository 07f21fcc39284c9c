"""``TaskHandle``: a submitted task, as its submitter sees it.

The handle is the task: ``Outcome`` (the single settle and blocking access), plus
``Execution`` (the worker side, and the interface pools drive it through), plus
``Delivery`` (the GUI side).  A task moves through::

    PENDING ──start──► QUEUED ──worker picks it──► RUNNING ──► SUCCEEDED | FAILED | CANCELLED
                          │                           │
                          └──── cancel / supersede / owner destroyed / shutdown ──► CANCELLED
                                                      └──── timeout ──► FAILED (TaskTimeoutError)

Cancelling a *running* task ends it at once: it is reported cancelled, its eventual
result is discarded, and ``ctx.cancelled`` turns True so the function can return early.
Python cannot interrupt a thread, so until the function returns its thread stays busy
(``PoolStatistics.abandoned`` counts such threads).
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QObject

from .._errors import AlreadyStartedError, BlockingCallError
from .._introspect import call_mode
from .._signals import WorkerSignals
from ._delivery import Continuation, Delivery, check_context, continuations_lock
from ._failure import TaskFailure
from ._outcome import Outcome, reject_callbacks
from ._state import TaskState

if TYPE_CHECKING:
    from collections.abc import Hashable

    from .._engine import DeliveryEngine
    from .._owners import OwnerRecord
    from ._host import PoolSlot, TaskHost

__all__ = ("TaskHandle",)

T = TypeVar("T")

_ids = itertools.count(1)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


# Used by tasks that do not belong to a pool (a Worker handed to a foreign QThreadPool).
_loose_lock = threading.Lock()

_PENDING, _RUNNING = TaskState.PENDING, TaskState.RUNNING
_FAILED, _CANCELLED = TaskState.FAILED, TaskState.CANCELLED


class TaskHandle(Delivery[T]):
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
    __slots__ = ("_key", "_priority")

    def __init__(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        engine: DeliveryEngine,
        name: str | None = None,
        signals: WorkerSignals | None = None,
        mode: int | None = None,
    ) -> None:
        # The name is computed when first read (most tasks never are): name_of costs
        # as much as the rest of this constructor.
        Outcome.__init__(self, next(_ids), name, _loose_lock)
        self._fn: Callable[..., T] | None = fn
        self._args: tuple[Any, ...] | None = args
        self._kwargs: dict[str, Any] | None = kwargs
        self._mode = call_mode(fn) if mode is None else mode
        self._engine = engine
        self._signals = signals
        self._pool: PoolSlot | None = None
        self._host: TaskHost | None = None
        self._owner: OwnerRecord | None = None
        self._key: Hashable | None = None
        self._priority = 0
        self._timeout: float | None = None
        self._callbacks: list[Continuation] | None = None
        # The submitter's contextvars travel with the work, as with asyncio.to_thread:
        # a copy (O(1)) entered once by the worker (~0.3 µs per task in all), which also
        # keeps one task's context changes from leaking into the next on that thread.
        self._context = contextvars.copy_context()
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

    def bind(
        self,
        pool: PoolSlot,
        host: TaskHost | None,
        engine: DeliveryEngine,
        *,
        priority: int = 0,
        timeout: float | None = None,
        owner: OwnerRecord | None = None,
        key: Hashable | None = None,
    ) -> None:
        """Attach the task to its pool and its manager, before it is queued.

        For the manager: from here the task takes the pool's lock for its terminal
        transition and counts it there.

        Raises:
            AlreadyStartedError: The task was bound (a ``Worker`` started) before.
            RuntimeError: It was made for another ``QApplication``.
        """
        if engine is not self._engine:
            raise RuntimeError(f"task {self.name!r} was created for another QApplication")
        with self._lock:
            if self._state is not _PENDING or self._pool is not None:
                raise AlreadyStartedError(
                    f"Worker {self.name!r} was already started ({self._state.value}); "
                    "a Worker runs once, create a new one"
                )
            self._pool = pool
        self._lock = pool.lock
        self._host = host
        self._priority = priority
        self._timeout = timeout
        if owner is not None:
            self._owner = owner
        self._key = key

    def check_unstarted(self) -> None:
        """Raise unless the task is still unstarted (a ``Worker`` before ``start``).

        Raises:
            AlreadyStartedError: The task was started or has ended.
        """
        if self._state is not _PENDING or self._pool is not None or self._ran:
            raise AlreadyStartedError(
                f"Worker {self.name!r} was already started ({self._state.value}); "
                "set its owner before starting it"
            )

    def set_owner(self, record: OwnerRecord | None) -> None:
        """Give a task that has not started an owner (a ``Worker``'s ``owner``).

        Raises:
            AlreadyStartedError: The task was started or has ended.
        """
        self.check_unstarted()
        self._owner = record

    @property
    def engine(self) -> DeliveryEngine:
        """The delivery engine that brings this task's outcome to the GUI thread."""
        return self._engine

    @property
    def owner_record(self) -> OwnerRecord | None:
        """The record of the owner (for the manager's bookkeeping), alive or not."""
        return self._owner

    # -- read-only view ---------------------------------------------------------------

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
    def timeout(self) -> float | None:
        """The timeout (seconds) the task was submitted with, or None."""
        return self._timeout

    @property
    def progress_value(self) -> tuple[int, int] | None:
        """The latest ``(current, total)`` the function reported, or None before any.

        The same word as ``LongJob.progress_value`` (``signals.progress`` is the signal).
        """
        return self._progress

    @property
    def progress(self) -> tuple[int, int] | None:
        """Deprecated alias of :attr:`progress_value`."""
        _deprecated("TaskHandle.progress", "TaskHandle.progress_value")
        return self._progress

    @property
    def status_text(self) -> str | None:
        """The latest status text the function reported, or None."""
        return self._status

    @property
    def failure(self) -> TaskFailure | None:
        """The :class:`TaskFailure` of a failed task, else None (as ``LongJob.failure``)."""
        if self._state is _FAILED and self._exc is not None:
            self._retrieved()
            return TaskFailure.from_exception(self._exc, self.id, self.name)
        return None

    @property
    def error(self) -> TaskFailure | None:
        """Deprecated alias of :attr:`failure`."""
        _deprecated("TaskHandle.error", "TaskHandle.failure")
        return self.failure

    def delivered(self) -> bool:
        """True once the outcome reached the GUI thread: signals emitted, continuations run.

        ``done()`` turns True on the thread that ends the task; ``delivered()`` when the
        GUI thread has caught up with it (what tests usually wait for).
        """
        return self._delivery == 2

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

    # -- cancellation and blocking access -----------------------------------------------

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

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task ends or ``timeout`` seconds pass; return ``done()``.

        Raises:
            BlockingCallError: Called on the GUI thread with no timeout while the task is
                still running (that would freeze the window); or, with no timeout, by a
                worker thread of the task's own pool when every thread of that pool
                would then be blocked on the pool's own tasks (a deadlock).
        """
        return self._wait_done(timeout)

    def result(self, timeout: float | None = None) -> T:
        """Return the function's result, blocking up to ``timeout`` seconds.

        Raises:
            Exception: The function's own exception, unchanged (traceback included).
            TaskCancelledError: The task was cancelled.
            TimeoutError: The task did not finish in time (it keeps running).
            BlockingCallError: See :meth:`wait`.
        """
        return self._outcome(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the function's exception (None if it succeeded), blocking like :meth:`result`.

        Raises:
            TaskCancelledError: The task was cancelled.
        """
        return self._exception(timeout)

    def _check_blocking(self, timeout: float | None) -> None:
        if timeout is None and self._engine.is_gui_thread():
            raise BlockingCallError(
                f"waiting for task {self.name!r} on the GUI thread with no timeout would "
                "freeze the window: connect to handle.signals, use handle.then(...), "
                "'await handle' in a coroutine, or pass an explicit timeout"
            )

    def _block(self, event: threading.Event, timeout: float | None) -> bool:
        pool = self._pool
        if timeout is None and pool is not None:
            # A worker blocking on its own pool's queue may be waiting for ever: the
            # pool knows (see ThreadPool.wait_from_worker).
            verdict = pool.wait_from_worker(self, event)
            if verdict is not None:
                return verdict
        return event.wait(timeout)

    def __await__(self) -> Generator[Any, None, T]:
        """``await handle`` in a coroutine: the result, or the function's exception unchanged.

        Works on the GUI thread's qasync loop (resolved by the delivery engine's drain:
        one coalesced wake-up) and on asyncio loops in other threads.  Cancelling the
        awaiting coroutine cancels the task; a task cancelled elsewhere raises
        ``asyncio.CancelledError`` in the awaiter.  See ``casare_workers._bridge``.
        """
        # The bridge builds on the core, not the other way round: imported on use.
        from .._bridge._await import await_task

        return await_task(self)

    # -- continuations on the GUI thread ------------------------------------------------

    def then(
        self,
        on_result: Callable[[T], object] | None = None,
        on_error: Callable[[TaskFailure], object] | None = None,
        on_cancelled: Callable[[], object] | None = None,
        *,
        context: QObject | None = None,
    ) -> TaskHandle[T]:
        """Run a callback when the task ends, on the GUI thread (or ``context``'s thread).

        Exactly one of the three callbacks runs (if given).  If ``context`` (default:
        the task's owner) has been destroyed by then, none runs; a continuation with an
        explicit, live ``context`` still learns that an owned task was cancelled because
        its owner died.  Cheaper than connecting to ``signals`` (no QObject per task).
        Exceptions raised by the callbacks are logged by the ``casare_workers`` logger;
        delivery goes on.

        Returns:
            This handle, so calls can be chained.

        Raises:
            TypeError: A callback is not callable, or ``context`` is not a QObject.
            ValueError: ``context`` lives in a thread that runs no Qt event loop (a pool
                thread, a plain ``threading.Thread``, a finished ``QThread``): the
                callback could never run there.
        """
        if context is not None:
            check_context(context, self._engine)
        # Checked here: a non-callable would otherwise only surface as a logged
        # "'int' object is not callable" when the task ends, far from the mistake.
        if (
            (on_result is not None and not callable(on_result))
            or (on_error is not None and not callable(on_error))
            or (on_cancelled is not None and not callable(on_cancelled))
        ):
            reject_callbacks(on_result=on_result, on_error=on_error, on_cancelled=on_cancelled)
        cont: Continuation = (on_result, on_error, on_cancelled, context, context is not None)
        with continuations_lock:
            if not self._delivery:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(cont)
                return self
        self._engine.post(lambda: self._run_continuation(cont))
        return self

    # -- the hooks of the single settle ---------------------------------------------------

    def _settle(
        self,
        state: TaskState,
        value: Any,
        exc: BaseException | None,
        reason: str = "cancelled",
        *,
        stop: bool = False,
    ) -> bool:
        owner = self._owner
        if owner is not None and state is not _CANCELLED and not owner.alive:
            # The owner died first: whatever the function produced goes nowhere.
            state, value, exc, reason = _CANCELLED, None, None, "owner destroyed"
        return Outcome._settle(self, state, value, exc, reason, stop=stop)

    def _settled_locked(self, previous: TaskState, state: TaskState) -> None:
        pool = self._pool
        if pool is not None:
            pool.count_settled(previous, state)

    def _after_settle(self, previous: TaskState, state: TaskState, stop: bool) -> None:
        pool = self._pool
        if state is _CANCELLED and pool is not None and previous is not _PENDING:
            pool.on_cancel(self, previous is _RUNNING)

    def _hand_over(self) -> None:
        self._engine.post_item(self)

    def __repr__(self) -> str:
        pool = f" pool={self.pool!r}" if self._pool is not None else ""
        return f"<TaskHandle #{self.id} {self.name!r} {self._state.value}{pool}>"
