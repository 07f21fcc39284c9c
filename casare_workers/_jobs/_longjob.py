"""``LongJob``: a ``QThread`` for work that runs seconds to hours, safe by construction.

The four ways a hand-written ``QThread`` aborts the process ("QThread: Destroyed while
thread is still running") are designed out, not documented away:

* **the last Python reference dropped** (``self.worker = Job()`` on a second click): the
  manager's :class:`JobRegistry` holds a strong reference from ``start()`` until the
  outcome has been delivered on the GUI thread;
* **the owner widget deleted**: a job never has a Qt parent (``setParent`` refuses); the
  owner is watched through its ``destroyed`` signal, and its death cancels the job;
* **the application object destroyed** (``app.shutdown()``, interpreter exit): PySide
  deletes every QObject that Python owns at that point.  While a job's thread runs, its
  C++ object is *parked*: parented to the GUI thread's own ``QThread`` object, which
  Qt never deletes before the process ends, so nothing can delete it; it is unparked on
  the GUI thread once the thread has finished;
* **``terminate()``**: never used, and refused (it kills a thread that may hold the GIL).

Life of a job::

    GUI thread                                        job thread
    ----------                                        ----------
    job.start(): registry keeps a reference,
      the C++ object is parked  ────────────────────► QThread.started  (Qt, queued to you)
                                                      run(): work(ctx), or the async
                                                      work on the job's own event loop
    engine ◄── ctx.progress / ctx.status ──────────── (coalesced: at most one per frame)
                                                      outcome decided: future, done callbacks
    QThread.finished (queued) ─► our slot runs first:
      final progress, then result | error | cancelled,
      unpark; then your finished slots run;
      then the registry drops its reference.

Cancellation is cooperative (Python threads cannot be killed): ``cancel()`` sets the
context's flag, calls ``requestInterruption()``, wakes ``ctx.wait``/checkpoints and, for
the async form, cancels the job's asyncio task.  The job ends *when its work returns*;
``stop(timeout)`` waits for that, bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import itertools
import logging
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, overload

import shiboken6
from PySide6.QtCore import (
    SIGNAL,
    QDeadlineTimer,
    QMetaObject,
    QObject,
    Qt,
    QThread,
    Signal,
    Slot,
)

from .._core._call import hand_over_to_gui
from .._core._context import TaskContext
from .._core._failure import TaskFailure as TaskError
from .._core._outcome import Outcome
from .._core._state import TaskState
from .._engine import DeliveryEngine, get_engine
from .._errors import (
    AlreadyStartedError,
    BlockingCallError,
    ConfigurationError,
    TaskCancelledError,
)
from .._introspect import WANTS_CTX, call_mode
from .._owners import OwnerRecord, check_owner
from .._report import report_callback_exception

if TYPE_CHECKING:
    from .._manager import WorkerManager, _ManagerCore

__all__ = ("JobContext", "JobRegistry", "JobStatistics", "LongJob")

logger = logging.getLogger("casare_workers")

T = TypeVar("T")

_PENDING, _RUNNING = TaskState.PENDING, TaskState.RUNNING
_SUCCEEDED, _FAILED, _CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED

#: Seconds ``stop()`` waits when no timeout is given.
DEFAULT_STOP_TIMEOUT = 5.0
#: Milliseconds the GUI thread waits, after ``QThread.finished``, for Qt's last
#: instructions on the job thread (it is already past the user's code).
_FINISH_WAIT_MS = 5000
#: Seconds the job thread waits, at most, for the GUI thread to return to its event loop
#: after ``start()`` before it lets Qt emit ``finished`` (see ``LongJob.start``).
_END_GATE_TIMEOUT = 5.0
#: Seconds of progress history the ETA is estimated from.
ETA_WINDOW = 10.0

_ids = itertools.count(1)


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError)


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobStatistics:
    """A snapshot of a manager's long jobs (``manager.statistics().jobs``).

    Attributes:
        live: Jobs started and not yet delivered (their thread may still be running).
        running: Jobs whose work is executing now.
        paused: Running jobs asked to pause (they wait at their next checkpoint).
        started: Jobs ever started.
        succeeded: Jobs that ended with a result.
        failed: Jobs that ended with an exception.
        cancelled: Jobs cancelled, superseded, orphaned or shut down.
    """

    live: int = 0
    running: int = 0
    paused: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


# -- the per-job state, in a plain object --------------------------------------------------


class _JobCore(Outcome[Any]):
    """One job's state machine, kept out of the QThread.

    Attribute access on a PySide ``QObject`` subclass goes through Shiboken (~0.3 µs per
    access against ~0.05 µs here), and ``ctx.progress`` touches four attributes per call:
    the 200 000-update flood of the benchmark runs entirely against this object.  It
    provides the fields :class:`~casare_workers.TaskContext` reads, so the job's ``ctx``
    *is* a ``TaskContext`` (same API as pool tasks).  Its state machine is the shared
    ``Outcome`` core (the same single settle as a task's).
    """

    _kind = "long job"

    __slots__ = (
        "_async_task",
        "_committed",
        "_delivered",
        "_emitted_progress",
        "_emitted_status",
        "_end_gate",
        "_engine",
        "_exc_frames",
        "_flush_waiting_start",
        "_interrupt_async",
        "_job",
        "_loop",
        "_owner",
        "_pause_cv",
        "_paused",
        "_progress",
        "_progress_dirty",
        "_ran",
        "_registry",
        "_resume_waiters",
        "_samples",
        "_started_seen",
        "_status",
        "_thread_done",
        "key",
    )

    def __init__(self, job: LongJob[Any], engine: DeliveryEngine, name: str) -> None:
        Outcome.__init__(self, next(_ids), name, threading.Lock())
        self.key: Hashable | None = None
        # A weak reference: the registry holds the job while it matters, and a cycle
        # job -> core -> job would let the cyclic GC destroy the QThread on any thread.
        self._job: weakref.ref[LongJob[Any]] = weakref.ref(job)
        self._engine = engine
        self._pause_cv = threading.Condition(threading.Lock())
        self._paused = False
        self._resume_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._delivered = False
        self._thread_done = False
        self._ran = False
        self._exc_frames: tuple[types.FrameType, ...] = ()
        self._owner: OwnerRecord | None = None
        self._registry: JobRegistry | None = None
        self._interrupt_async = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_task: asyncio.Task[Any] | None = None
        self._committed = False
        self._progress: tuple[int, int] | None = None
        self._status: str | None = None
        self._progress_dirty = False
        self._emitted_progress: tuple[int, int] | None = None
        self._emitted_status: str | None = None
        self._started_seen = False
        self._flush_waiting_start = False
        self._samples: deque[tuple[float, int]] = deque()
        # Held shut by the job thread before it lets Qt emit finished; see LongJob.start.
        self._end_gate: threading.Event | None = None

    def _open_end_gate(self) -> None:
        """Let the job thread end now (before a blocking wait for it).  Any thread."""
        gate = self._end_gate
        if gate is not None:
            gate.set()

    # -- what the job's ctx reads (ContextSource) ----------------------------------------------

    def _owner_alive(self) -> bool:
        owner = self._owner
        return owner is None or owner.alive

    def report_progress(self, current: int, total: int) -> None:
        """Record progress; delivered within a frame (any thread)."""
        self._progress = (current, total)
        if not self._progress_dirty:
            self._progress_dirty = True
            self._engine.mark_dirty(self)

    def report_status(self, text: str) -> None:
        """Record a status text, coalesced like progress (any thread)."""
        self._status = text
        if not self._progress_dirty:
            self._progress_dirty = True
            self._engine.mark_dirty(self)

    @property
    def stop_requested(self) -> bool:
        """True once the job was cancelled or its owner died."""
        return self._cancel_requested or not self._owner_alive()

    def cancel_event(self) -> threading.Event:
        """The event ``ctx.wait()`` sleeps on."""
        return self._cancel_event()

    def _check_blocking(self, timeout: float | None) -> None:
        if timeout is None and self._engine.is_gui_thread():
            raise BlockingCallError(
                f"waiting for long job {self.name!r} on the GUI thread with no timeout "
                "would freeze the window: connect to job.result / job.error, or await "
                "its future from a coroutine"
            )

    def _call_done_callback(self, fn: Callable[[Any], object]) -> None:
        job = self._job()  # done callbacks receive the LongJob, not this core
        if job is not None:
            try:
                fn(job)
            except BaseException as exc:
                report_callback_exception(f"a done callback of long job {self.name!r}", exc)

    # -- cancellation and pause (any thread) ------------------------------------------------

    def cancel(self, *, reason: str = "cancelled") -> bool:
        """Ask the job to stop; see :meth:`LongJob.cancel`."""
        with self._lock:
            if self._finished or self._committed:
                return False
            first = not self._cancel_requested
            self._cancel_requested = True
            if self.cancel_reason is None:
                self.cancel_reason = reason
            never_started = self._state is _PENDING
            task, loop = self._async_task, self._loop
            ev = self._cancel_ev
        if ev is not None:
            ev.set()
        self._wake_paused()
        if never_started:
            # Nothing runs: end it now and tell the GUI (no thread, so no Qt signals).
            if self._settle(_CANCELLED, None, None):
                self._engine.post(self._deliver)
            return True
        job = self._job()
        if job is not None:
            try:
                QThread.requestInterruption(job)  # thread-safe in Qt
            except RuntimeError:  # the C++ object is gone: nothing left to interrupt
                pass
        if task is not None and loop is not None and self._interrupt_async:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the job's loop has just closed: the work is over
                pass
        return first

    def _wake_paused(self) -> None:
        with self._pause_cv:
            self._pause_cv.notify_all()
            waiters, self._resume_waiters = self._resume_waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop is closed
                pass

    def set_paused(self, paused: bool) -> bool:
        with self._pause_cv:
            if self._paused is paused or (paused and self._finished):
                return False
            self._paused = paused
        if not paused:
            self._wake_paused()
        return True

    # -- the job thread -----------------------------------------------------------------------

    def _begin(self) -> bool:
        """The thread entered ``run()``; False if the job was cancelled before that."""
        self._started_at = time.perf_counter()
        if self._cancel_requested or not self._owner_alive():
            self._settle(_CANCELLED, None, None)
            return False
        self._ran = True
        return True

    def _conclude(self, value: Any, exc: BaseException | None) -> None:
        """Turn the work's return value or exception into the one outcome."""
        stop_asked = self._cancel_requested or not self._owner_alive()
        if exc is None:
            # A result produced after a cancel request is stale by definition.
            state = _CANCELLED if stop_asked else _SUCCEEDED
        elif stop_asked and _is_cancellation(exc):
            state = _CANCELLED
        else:
            state = _FAILED  # a real failure, even during cancellation (e.g. a rollback)
        self._settle(
            state, value if state is _SUCCEEDED else None, exc if state is _FAILED else None
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
        if state is _CANCELLED and not self._owner_alive():
            reason = "owner destroyed"
        return Outcome._settle(self, state, value, exc, reason, stop=stop)

    def _settled_locked(self, previous: TaskState, state: TaskState) -> None:
        exc = self._exc
        if exc is not None:
            self._exc_frames = _frames_of(exc)

    def _after_settle(self, previous: TaskState, state: TaskState, stop: bool) -> None:
        self._wake_paused()
        registry = self._registry
        if registry is not None:
            registry._count_settled(state)

    # -- GUI thread ---------------------------------------------------------------------------

    def _flush_progress(self) -> None:
        """Emit the latest progress/status (called by the engine, once per frame)."""
        self._progress_dirty = False
        if self._delivered:
            return
        if not self._started_seen:
            # QThread.started has not reached the GUI thread yet: hold the update so
            # that nobody sees progress before started.
            self._flush_waiting_start = True
            return
        self._emit_progress()

    def _emit_progress(self) -> None:
        job = self._job()
        if job is None or not self._owner_alive() or not shiboken6.isValid(job):
            return
        progress = self._progress
        if progress is not None and progress != self._emitted_progress:
            self._emitted_progress = progress
            self._record_sample(progress[0])
            job.progress.emit(*progress)
        status = self._status
        if status is not None and status != self._emitted_status:
            self._emitted_status = status
            job.status.emit(status)

    def _record_sample(self, current: int) -> None:
        now = time.perf_counter()
        samples = self._samples
        samples.append((now, current))
        while len(samples) > 2 and now - samples[0][0] > ETA_WINDOW:
            samples.popleft()

    def _deliver(self) -> None:
        """Emit the final progress and the outcome, exactly once.  GUI thread."""
        if self._delivered or not self._finished:
            return
        self._delivered = True
        self._progress_dirty = False
        job = self._job()
        if job is None or not self._owner_alive() or not shiboken6.isValid(job):
            return
        if self._ran:
            self._emit_progress()  # the final value always arrives before the outcome
        state = self._state
        if state is _FAILED and not (
            self._waited
            or self._future is not None
            or job.receivers(SIGNAL("error(PyObject)")) > 0
        ):
            # Logged when the job is freed unless its failure is read by then (as tasks).
            self._note_unretrieved()
        try:
            if state is _SUCCEEDED:
                job.result.emit(self._value)
            elif state is _FAILED:
                assert self._exc is not None
                job.error.emit(TaskError.from_exception(self._exc, self.id, self.name))
            else:
                job.cancelled.emit()
        except BaseException as exc:
            report_callback_exception(f"a slot of long job {self.name!r}", exc)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# -- the context the work receives ------------------------------------------------------------


class JobContext(TaskContext):
    """The ``ctx`` a :class:`LongJob`'s work receives.

    It is a :class:`~casare_workers.TaskContext` (``progress``, ``status``,
    ``cancelled``, ``raise_if_cancelled``, ``wait``): code written for pool tasks runs in
    a job unchanged.  It adds pause checkpoints.

    Example:
        >>> class Export(LongJob):
        ...     def work(self, ctx):
        ...         for i, row in enumerate(rows):
        ...             ctx.checkpoint()  # stops here if cancelled, waits here if paused
        ...             write(row)
        ...             ctx.progress(i + 1, len(rows))
    """

    __slots__ = ()

    @property
    def _core(self) -> _JobCore:
        return cast(_JobCore, self._source)

    @property
    def paused(self) -> bool:
        """True while the job is asked to pause."""
        return self._core._paused

    def checkpoint(self) -> None:
        """Raise if cancelled; block while paused (waking on resume or cancel).  Job thread.

        Raises:
            TaskCancelledError: The job was cancelled (before or during the pause).
        """
        core = self._core
        if core._paused and not self.cancelled:
            with core._pause_cv:
                while core._paused and not self.cancelled:
                    core._pause_cv.wait()
        self.raise_if_cancelled()

    def point_of_no_return(self) -> None:
        """Make the job uncancellable from here on, or raise if it is already cancelled.

        For work whose last steps must not be abandoned half-way (a commit): after this
        returns, ``cancel()`` has no effect and the work's return value is delivered as
        the result.  A job cancelled before this point raises here (undo what needs
        undoing, then let the exception propagate).

        Raises:
            TaskCancelledError: The job was cancelled before this point.
        """
        core = self._core
        with core._lock:
            stop = core._cancel_requested or not core._owner_alive()
            if not stop:
                core._committed = True
        if stop:
            raise TaskCancelledError(f"long job {core.name!r} was cancelled")

    async def acheckpoint(self) -> None:
        """The ``await``-able :meth:`checkpoint` for async work: pauses without blocking the loop.

        Raises:
            TaskCancelledError: The job was cancelled.
        """
        core = self._core
        loop = asyncio.get_running_loop()
        while True:
            with core._pause_cv:
                if not core._paused or self.cancelled:
                    break
                fut: asyncio.Future[None] = loop.create_future()
                core._resume_waiters.append((loop, fut))
            await fut  # resolved by resume() or cancel(), from any thread
        self.raise_if_cancelled()


# -- parking: no one may delete a running job's C++ object ---------------------------------

# The GUI thread's QThread object.  A strong reference is kept: when a parent's Python
# wrapper dies, Shiboken invalidates its children's wrappers.
_anchor: list[QThread] = []


def _park(job: LongJob[Any]) -> None:
    """Give the running job's C++ object to Qt (GUI thread).

    PySide deletes every Python-owned QObject when the application object is destroyed
    (``app.shutdown()``, interpreter exit); a running QThread deleted that way aborts the
    process.  Parented to the GUI thread's own QThread object (which Qt keeps until the
    process ends) it is owned by C++ and nobody deletes it.
    """
    if not _anchor:
        _anchor.append(job._engine.thread())
    QObject.setParent(job, _anchor[0])


def _unpark(job: LongJob[Any]) -> None:
    if shiboken6.isValid(job) and job.parent() is not None:
        QObject.setParent(job, None)  # ownership back to Python (and to the registry)


# -- the QThread ------------------------------------------------------------------------------


class LongJob(QThread, Generic[T]):
    """A ``QThread`` for work that runs seconds to hours; never aborts the process.

    Give it a function (``LongJob(fn, args=(...), kwargs={...})``, the
    ``threading.Thread`` convention, so that job options never collide with your
    function's keyword arguments) or subclass it and override :meth:`work`: a
    subclass's positional arguments go to ``work`` (``Migrate(steps, owner=self)`` runs
    ``work(steps, ctx)``), and arguments ``work`` cannot take fail here.  A subclass
    may instead take its data in its own ``__init__`` and pass only the options
    (``owner=``, ``key=``, ``name=``, ``manager=``) to ``super().__init__()``.  A
    ``work`` (or function) that declares ``ctx`` receives a :class:`JobContext`.  If it is
    ``async``, it runs on the job's own asyncio loop, created for the job and closed
    when it ends (tasks cancelled, async generators and the default executor shut
    down, as ``asyncio.run`` does).

    The job's own signals are emitted on the GUI thread, so lambdas and closures
    connected to them run there too.

    Signals:
        progress(int, int): ``(current, total)``; at most one per frame (~16 ms), the
            last value always arrives.  :attr:`eta` and :attr:`elapsed` are up to date
            when it fires.
        status(str): the latest status text, coalesced like ``progress``.
        result(object): the work's return value.
        error(object): a :class:`~casare_workers.TaskError` (exception + formatted
            traceback).
        cancelled(): the job was cancelled, superseded, orphaned or shut down, and its
            work has returned.

    Order on the GUI thread: Qt's ``started``, then any ``progress``/``status``, then
    exactly one of ``result``/``error``/``cancelled``, then Qt's ``finished`` (which is
    not shadowed).  Connect to ``started``/``finished`` with slots of GUI objects (or
    lambdas): Qt emits them on the job thread and queues them to the GUI thread.
    Connect ``started`` before :meth:`start` (it is emitted as the thread begins);
    ``finished``, like the job's own signals, may also be connected right after
    ``start()`` on the GUI thread.  A job cancelled before it started emits only
    ``cancelled``.  Once the owner is destroyed, none of this class's signals is
    emitted.

    Lifetime: keep a reference or not, delete the owner or not, start a second job with
    the same ``key`` or quit the application: the running thread is never destroyed
    (see the module docstring).  The manager (``manager=``, default
    :func:`~casare_workers.default_manager`: the application's first manager) tracks
    every started job, counts it in ``statistics().jobs`` and stops it at ``shutdown``.

    Args:
        *positional: The function to run (``target``); for a subclass that overrides
            :meth:`work`, the arguments for ``work``.
        args: Positional arguments for ``target`` (or ``work``).
        kwargs: Keyword arguments for ``target`` (or ``work``).
        owner: A QObject (usually the widget showing the job).  When it is destroyed,
            or its window is closed, the job is cancelled; once it is destroyed the job
            emits nothing more.  Not a Qt parent: a parent would delete the running
            thread with itself.
        key: Jobs with the same key (per owner) supersede each other: starting a new
            one cancels the previous one.
        name: A display name (default: the function's or class's name).
        manager: The :class:`~casare_workers.WorkerManager` that tracks the job.

    Example:
        >>> class Migrate(LongJob):
        ...     async def work(self, steps, ctx):
        ...         for i, step in enumerate(steps):
        ...             await ctx.acheckpoint()
        ...             await step()
        ...             ctx.progress(i + 1, len(steps))
        ...         return "done"
        >>> job = Migrate(steps, owner=self, key="migration")   # doctest: +SKIP
        >>> job.progress.connect(to_percent(self.bar.setValue))  # doctest: +SKIP
        >>> job.result.connect(self.show_report)                # doctest: +SKIP
        >>> job.start()                                         # doctest: +SKIP
    """

    progress = Signal("qint64", "qint64")  # type: ignore[arg-type]
    status = Signal(str)
    result = Signal(object)
    error = Signal(object)
    cancelled = Signal()

    #: True: ``cancel()`` cancels the async work's task (it sees ``CancelledError`` at
    #: its current ``await``).  False: cancellation is cooperative only (``ctx.cancelled``,
    #: checkpoints), for work that must finish the step it is in.
    cancel_async_task: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__} overrides run(); a LongJob runs its work in run() "
                "itself (cancellation, progress, outcome, lifetime): override work() instead"
            )
        for name in ("started", "finished"):
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__qualname__} defines {name!r}, which would shadow "
                    f"QThread.{name} (and break every connection to it); report data "
                    "through the result/progress/status signals or add a signal with "
                    "another name"
                )

    @overload
    def __init__(
        self: LongJob[T],
        target: Callable[..., Awaitable[T]],
        /,
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        owner: QObject | None = None,
        key: Hashable | None = None,
        name: str | None = None,
        manager: WorkerManager | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: LongJob[T],
        target: Callable[..., T] | None = None,
        /,
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        owner: QObject | None = None,
        key: Hashable | None = None,
        name: str | None = None,
        manager: WorkerManager | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        *work_args: Any,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        owner: QObject | None = None,
        key: Hashable | None = None,
        name: str | None = None,
        manager: WorkerManager | None = None,
    ) -> None: ...

    def __init__(
        self,
        *positional: Any,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        owner: QObject | None = None,
        key: Hashable | None = None,
        name: str | None = None,
        manager: WorkerManager | None = None,
    ) -> None:
        overridden = type(self).work is not LongJob.work
        if overridden:
            # The subclass form: positional arguments are work()'s (Migrate(steps, ...)).
            if positional and args:
                raise TypeError(
                    f"{type(self).__qualname__}(...) got work() arguments both positionally "
                    "and as args=; pass them one way"
                )
            if positional:
                args = positional
            fn: Callable[..., Any] = self.work
            default_name = type(self).__qualname__
        else:
            if not positional:
                raise TypeError(
                    "LongJob needs work to run: LongJob(fn, args=(...)), or subclass "
                    "LongJob and override work(self, ctx)"
                )
            target = positional[0]
            if not callable(target):
                raise TypeError(
                    f"LongJob(target) expects a callable, got {type(target).__name__}; "
                    "if you meant a Qt parent, pass owner=widget instead (a parent would "
                    "delete the running thread)"
                )
            if len(positional) > 1:
                raise TypeError(
                    "LongJob(fn, ...) takes the function's arguments as args=(...) and "
                    "kwargs={...}, so that they never collide with the job's own options: "
                    f"LongJob({_qualname(target)}, args=(...))"
                )
            fn = target
            default_name = _qualname(target)
        if isinstance(args, str | bytes):
            raise TypeError("args must be a tuple of positional arguments, not a string")
        args = tuple(args)
        kwargs = dict(kwargs or {})
        mode = call_mode(fn)
        if mode == WANTS_CTX and "ctx" in kwargs:
            raise TypeError("the job passes ctx itself: do not put 'ctx' in kwargs")
        if overridden:
            _check_work_arguments(self, fn, args, kwargs)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise TypeError(
                    f"key must be hashable (a string or a tuple of them), got {type(key).__name__}"
                ) from None
        from .._manager import WorkerManager, default_manager

        if manager is not None and not isinstance(manager, WorkerManager):
            raise TypeError(f"manager must be a WorkerManager, got {type(manager).__name__}")
        engine = get_engine()
        super().__init__()
        if not engine.is_gui_thread():
            # Slots of this object (the finished handler) must run on the GUI thread.
            self.moveToThread(engine.thread())
        self._engine = engine
        self._mcore: _ManagerCore = (manager if manager is not None else default_manager())._core
        core = _JobCore(self, engine, name if name is not None else default_name)
        core.key = key
        core._interrupt_async = type(self).cancel_async_task
        if owner is not None:
            core._owner = self._mcore.owner_record(check_owner(owner))
        self._core = core
        self._fn: Callable[..., Any] | None = fn
        self._args: tuple[Any, ...] | None = args
        self._kwargs: dict[str, Any] | None = kwargs
        self._mode = mode
        self._is_async = inspect.iscoroutinefunction(fn)
        self._claimed = False
        # Connected before anyone else can connect, so these run before the user's
        # slots (queued connections run in connection order).  They are @Slot methods
        # of this GUI-thread object: Qt queues them from the job thread.
        self.started.connect(self._on_thread_started)
        self.finished.connect(self._on_thread_finished)

    # -- what subclasses implement ------------------------------------------------------------

    def work(self, *args: Any, **kwargs: Any) -> Any:
        """Override: the job's work (blocking, or ``async def``).  Runs on the job thread.

        Declare a ``ctx`` parameter to receive the :class:`JobContext`.  Its return
        value (or the coroutine's) is the job's result.
        """
        raise NotImplementedError  # pragma: no cover - replaced by subclasses

    # -- read-only view ---------------------------------------------------------------------

    @property
    def id(self) -> int:
        """A process-unique job number."""
        return self._core.id

    @property
    def name(self) -> str:
        """The job's display name."""
        return self._core.name

    @property
    def key(self) -> Hashable | None:
        """The supersede key the job was created with, or None."""
        return self._core.key

    @property
    def owner(self) -> QObject | None:
        """The owner QObject while it is alive, else None."""
        record = self._core._owner
        return record.get() if record is not None else None

    @property
    def state(self) -> TaskState:
        """PENDING, RUNNING, then SUCCEEDED, FAILED or CANCELLED."""
        return self._core._state

    @property
    def cancel_reason(self) -> str | None:
        """Why the job was cancelled ("cancelled", "superseded", "shutdown", ...), or None."""
        return self._core.cancel_reason

    @property
    def progress_value(self) -> tuple[int, int]:
        """The latest ``(current, total)`` the work reported; ``(0, 0)`` before any report.

        A total of 0 means "unknown", as in ``ctx.progress``.  Any thread, any time.
        """
        return self._core._progress or (0, 0)

    @property
    def status_text(self) -> str:
        """The latest status text the work reported; ``""`` before any.  Any time."""
        return self._core._status or ""

    @property
    def elapsed(self) -> float:
        """Seconds the work has been running (or ran); 0.0 before it starts."""
        core = self._core
        if not core._started_at:
            return 0.0
        return max(0.0, (core._ended_at or time.perf_counter()) - core._started_at)

    @property
    def eta(self) -> float | None:
        """Estimated seconds until done, or None when it cannot be estimated.

        The rate is measured over the last ``ETA_WINDOW`` (10) seconds of delivered
        progress (so a slow start does not skew it), falling back to the average since
        the start.  Needs a known total (``total > 0``).
        """
        core = self._core
        progress = core._emitted_progress or core._progress
        if core._finished:
            return 0.0 if core._state is _SUCCEEDED else None
        if progress is None or not core._started_at:
            return None
        current, total = progress
        if total <= 0 or current <= 0:
            return None
        remaining = max(0, total - current)
        samples = core._samples
        if len(samples) >= 2:
            (t0, c0), (t1, c1) = samples[0], samples[-1]
            if t1 > t0 and c1 > c0:
                return remaining * (t1 - t0) / (c1 - c0)
        return remaining * self.elapsed / current

    @property
    def failure(self) -> TaskError | None:
        """The :class:`~casare_workers.TaskError` of a failed job, else None."""
        core = self._core
        if core._state is _FAILED and core._exc is not None:
            core._retrieved()
            return TaskError.from_exception(core._exc, core.id, core.name)
        return None

    def done(self) -> bool:
        """True once the outcome is decided (the thread may be finishing its last steps)."""
        return self._core._finished

    @property
    def paused(self) -> bool:
        """True while the job is asked to pause (a property, like ``ctx.paused``)."""
        return self._core._paused

    @property
    def ctx(self) -> JobContext:
        """A :class:`JobContext` for this job (for ``work`` methods that do not declare one)."""
        return JobContext(cast(Any, self._core))

    # -- starting -----------------------------------------------------------------------------

    def start(self, priority: QThread.Priority = QThread.Priority.InheritPriority) -> None:
        """Start the job's thread.  A job runs once.  Any thread (usually the GUI thread).

        Raises:
            AlreadyStartedError: The job was started before, or cancelled before starting.
            ManagerShutdownError: The manager has been shut down.
            ValueError: The owner has been destroyed.
        """
        core = self._core
        with core._lock:
            if self._claimed or core._state is not _PENDING:
                what = (
                    "cancelled before it started"
                    if core._state is _CANCELLED
                    else f"already started ({core._state.value})"
                )
                raise AlreadyStartedError(
                    f"long job {core.name!r} was {what}; a LongJob runs once: create a new "
                    "one (with the same key= to replace a running one)"
                )
            # RUNNING from here on: a cancel() now goes through the thread (run() sees
            # the request and ends at once), never through the not-started path.
            self._claimed = True
            core._state = _RUNNING
        try:
            self._mcore.check_open()
            if core._owner is not None and not core._owner.alive:
                raise ValueError(
                    "the owner of this job has been destroyed; start jobs from a live "
                    "widget or omit owner"
                )
            self._mcore.jobs.register(self)
        except BaseException:
            with core._lock:
                self._claimed = False
                core._state = _PENDING
            raise
        if self._engine.is_gui_thread():
            _park(self)
            # Opened when the GUI thread is back in its event loop: connections made
            # right after start() are in place before Qt emits finished (it would be
            # emitted from the job thread, maybe before the next line of the caller).
            gate = core._end_gate = threading.Event()
            self._engine.post(gate.set)
        else:
            self._engine.post(lambda: _park(self) if not core._thread_done else None)
        QThread.start(self, priority)

    # -- cancel, pause, stop ------------------------------------------------------------------

    def cancel(self, *, reason: str = "cancelled") -> bool:
        """Ask the job to stop.  Thread-safe; never blocks.

        ``reason`` is keyword-only, so ``button.clicked.connect(job.cancel)`` works
        (``clicked`` passes a bool).

        Sets ``ctx.cancelled``, calls ``requestInterruption()``, wakes ``ctx.wait`` and
        paused checkpoints, and (async work, unless ``cancel_async_task`` is False)
        cancels the job's asyncio task.  The job ends ``cancelled`` when its work returns;
        a result returned after the request is discarded (it is stale: superseded, or
        nobody wants it).  A job not started yet ends at once.  A job past
        ``ctx.point_of_no_return()`` is not affected.

        Returns:
            True if this call asked a job that had not ended to stop.
        """
        return self._core.cancel(reason=reason)

    def requestInterruption(self) -> None:
        """Qt's interruption request, as :meth:`cancel` (so ported code keeps working)."""
        self._core.cancel()

    def pause(self) -> bool:
        """Ask the work to wait at its next checkpoint.  Thread-safe.

        Returns:
            True if the job was running and not paused already.
        """
        return self._core.set_paused(True)

    def resume(self) -> bool:
        """Let a paused job continue.  Thread-safe.  Returns True if it was paused."""
        return self._core.set_paused(False)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
        """Cancel, then wait up to ``timeout`` seconds for the thread to end.

        On the GUI thread the outcome (``cancelled``, or the result that won the race)
        is emitted before this returns.  The wait is bounded even on the GUI thread;
        the window does not repaint meanwhile.

        Returns:
            True if the thread has ended; False if the work is still running (it keeps
            its reference and is stopped again at shutdown).
        """
        _check_seconds("timeout", timeout)
        self._core.cancel()
        if self._core._state is _PENDING or not self._claimed:
            return True
        self._core._open_end_gate()
        ended = QThread.wait(self, QDeadlineTimer(int(timeout * 1000)))
        if ended and self._engine.is_gui_thread():
            self._on_thread_finished()
        return ended

    def terminate(self) -> None:
        """Refused: killing a thread that runs Python can leave the GIL held forever.

        Raises:
            RuntimeError: Always; use :meth:`stop` (cooperative, bounded) instead.
        """
        raise RuntimeError(
            "QThread.terminate() is never safe for Python code (the thread may hold the "
            "GIL or a lock forever); use job.stop(timeout) or job.cancel()"
        )

    def setParent(self, parent: QObject | None) -> None:
        """Refused for a parent: deleting the parent would delete the running thread.

        Raises:
            TypeError: ``parent`` is not None; pass ``owner=`` when creating the job.
        """
        if parent is not None:
            raise TypeError(
                "a LongJob cannot have a Qt parent (deleting the parent would destroy the "
                "running thread and abort the process); pass owner=widget when creating "
                "the job: the job is then cancelled when the widget is destroyed"
            )

    def wait(self, *args: Any, **kwargs: Any) -> bool:
        """``QThread.wait``, refusing to freeze the GUI thread with no deadline.

        Raises:
            BlockingCallError: Called on the GUI thread with no deadline while running.
        """
        if (
            self._engine.is_gui_thread()
            and self.isRunning()
            and ((not args and not kwargs) or _is_forever(args, kwargs))
        ):
            raise BlockingCallError(
                f"waiting for long job {self.name!r} on the GUI thread with no deadline "
                "would freeze the window: connect to its signals, or use job.stop(timeout) "
                "/ job.wait(milliseconds)"
            )
        self._core._open_end_gate()
        return QThread.wait(self, *args, **kwargs)

    # -- outcome for other threads and coroutines ---------------------------------------------

    def get(self, timeout: float | None = None) -> T:
        """Return the work's result, blocking up to ``timeout`` seconds.

        Raises:
            Exception: The work's own exception, unchanged (traceback included).
            TaskCancelledError: The job was cancelled.
            TimeoutError: The job did not end within ``timeout``.
            BlockingCallError: Called on the GUI thread with no timeout before the end.
        """
        return cast(T, self._core._outcome(timeout))

    @property
    def future(self) -> Future[T]:
        """A ``concurrent.futures.Future`` of the outcome (created on first access).

        For coroutines (``await asyncio.wrap_future(job.future)``) and other threads.
        ``future.cancel()`` asks the job to stop; the Future is cancelled when the work
        has returned.
        """
        return cast(Future[T], self._core.future)

    def __await__(self) -> Generator[Any, None, T]:
        """``await job`` in a coroutine: the result, or the work's exception unchanged.

        Cancelling the awaiting coroutine cancels the job; a job cancelled elsewhere
        raises ``asyncio.CancelledError`` in the awaiter.  See ``casare_workers._asyncio``.
        """
        from .._asyncio import await_job  # the bridge builds on the core: imported on use

        return cast(Generator[Any, None, T], await_job(self))

    def add_done_callback(self, fn: Callable[[LongJob[T]], object]) -> None:
        """Call ``fn(job)`` on the thread that decides the outcome (or now if decided).

        That is the job thread, or the caller of ``cancel()`` for a job that never
        started.  Low-level (for the asyncio bridge); GUI code wants the signals.

        Raises:
            TypeError: ``fn`` is not callable (now, not as a logged error at the end).
        """
        self._core.add_done_callback(fn)

    # -- the job thread -----------------------------------------------------------------------

    def run(self) -> None:
        """Qt's thread entry: run the work and decide the outcome.  Job thread.

        Never override (``work`` is the hook); no exception escapes into Qt.
        """
        core = self._core
        try:
            if core._begin():
                ctx = JobContext(cast(Any, core))
                try:
                    value = self._invoke(ctx)
                    if isinstance(value, QObject):  # made here: it must not keep this thread
                        hand_over_to_gui(value, core._engine.thread(), f"long job {core.name!r}")
                except BaseException as exc:
                    core._conclude(None, exc)
                else:
                    core._conclude(value, None)
        except BaseException as exc:  # a bug of ours: never let it into Qt's thread
            report_callback_exception(f"long job {core.name!r}", exc)
            core._settle(_FAILED, None, exc)
        gate = core._end_gate
        if gate is not None:
            # Qt emits finished once this returns.  Hold it until the GUI thread is back
            # in its event loop after start(), so that a slot connected to finished right
            # after start() cannot miss it.  Bounded: a GUI thread that never returns
            # there (and never waits for the job, which opens the gate) cannot hold it.
            gate.wait(_END_GATE_TIMEOUT)
        # The function and its arguments are dropped on the GUI thread (in the finished
        # handler), so QObjects among them are never destroyed on this thread.

    def _invoke(self, ctx: JobContext) -> Any:
        fn, args, kwargs = self._fn, self._args, self._kwargs
        assert fn is not None
        assert args is not None
        assert kwargs is not None
        if self._mode == WANTS_CTX:
            kwargs = {**kwargs, "ctx": ctx}
        if self._is_async:
            return self._run_async(lambda: fn(*args, **kwargs))
        value = fn(*args, **kwargs)
        if inspect.iscoroutine(value):  # a plain function that returned a coroutine
            return self._run_async(lambda: value)
        return value

    def _run_async(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run the async work on a loop created for this job, closed when it ends."""
        core = self._core

        async def main() -> Any:
            task = asyncio.current_task()
            with core._lock:
                core._loop = asyncio.get_running_loop()
                core._async_task = task
                cancel_now = core._cancel_requested and core._interrupt_async
            try:
                if cancel_now:
                    raise asyncio.CancelledError
                return await make()
            finally:
                with core._lock:
                    core._async_task = None

        try:
            # asyncio.Runner does what asyncio.run does (cancel leftover tasks, shut
            # down async generators and the default executor, close the loop) while
            # letting us reach the loop and the task for cancellation.
            with asyncio.Runner() as runner:
                return runner.run(main())
        finally:
            with core._lock:
                core._loop = None

    # -- GUI thread ---------------------------------------------------------------------------

    def _before_outcome(self) -> None:
        """Hook for subclasses: deliver what must precede the outcome.  GUI thread."""

    @Slot()
    def _on_thread_started(self) -> None:
        """QThread.started reached the GUI thread (runs before the user's slots)."""
        core = self._core
        core._started_seen = True
        if core._flush_waiting_start:
            core._flush_waiting_start = False
            # Queued, so it runs after the user's started slots (already queued).
            QMetaObject.invokeMethod(
                self, "_flush_after_start", Qt.ConnectionType.QueuedConnection
            )

    @Slot()
    def _flush_after_start(self) -> None:
        self._core._flush_progress()

    @Slot()
    def _on_thread_finished(self) -> None:
        """The thread ended: deliver the outcome, unpark, release.  GUI thread, idempotent.

        Runs before the user's ``finished`` slots (connected first), so they see the
        outcome signals already emitted.
        """
        core = self._core
        if core._thread_done:
            return
        core._open_end_gate()
        # Qt emits finished from the job thread a few instructions before the thread
        # ends; wait for those (the user's code is over: this returns at once).
        if not QThread.wait(self, QDeadlineTimer(_FINISH_WAIT_MS)):
            logger.error("long job %r: thread did not end after finished", core.name)
            return
        core._thread_done = True
        core._started_seen = True
        if not core._finished:  # cannot happen (run always settles); never hang a job
            core._settle(_FAILED, None, RuntimeError("the job's thread ended without outcome"))
        _unpark(self)
        try:
            self._before_outcome()
        except BaseException as exc:
            report_callback_exception(f"long job {core.name!r}", exc)
        core._deliver()
        self._fn = self._args = self._kwargs = None
        _clear_frames(core._exc_frames)
        core._exc_frames = ()
        registry = core._registry
        if registry is not None:
            # Through the engine: the registry's reference is dropped after the user's
            # finished slots (queued before this drain) have run.
            self._engine.post(lambda: registry.release(core))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self._core.id} {self._core.name!r} {self.state.value}>"


def _frames_of(exc: BaseException) -> tuple[types.FrameType, ...]:
    """The frames of ``exc``'s traceback (and its cause's and context's), as raised.

    Taken when the job settles, on the job thread: later, an awaiter that re-raises the
    same exception object prepends its own (live) frames to the traceback.
    """
    frames: list[types.FrameType] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        pending += (current.__cause__, current.__context__)
    return tuple(frames)


def _clear_frames(frames: tuple[types.FrameType, ...]) -> None:
    """Drop the local variables of an ended job's traceback frames (GUI thread).

    The frames of ``run`` and of a subclass's ``work`` hold the job itself, and the job
    holds its exception: a reference cycle with a QThread in it, which only the cyclic
    garbage collector frees, on whatever thread it happens to run.  The traceback keeps
    its frames and line numbers (formatting and ``TaskError.traceback`` are unchanged);
    only post-mortem inspection of the locals is lost.  Only the job thread's own frames
    are cleared (the thread has ended, so none of them is running).
    """
    for frame in frames:
        with contextlib.suppress(RuntimeError):  # a frame still executing: leave it
            frame.clear()


def _qualname(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _check_work_arguments(
    job: LongJob[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Refuse, at construction, arguments a subclass's ``work()`` cannot take."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # nothing to check against
        return
    extra = {"ctx": None} if call_mode(fn) == WANTS_CTX else {}
    try:
        signature.bind(*args, **kwargs, **extra)
    except TypeError as exc:
        name = type(job).__qualname__
        raise TypeError(
            f"{name}(...) passes its positional arguments to {name}.work(), which cannot "
            f"take them ({exc}): declare them as parameters of work (def work(self, steps, "
            "ctx)), or take them in your own __init__ and pass only the job's options "
            "(owner=, key=, name=, manager=) to super().__init__()"
        ) from None


def _is_forever(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    deadline = args[0] if args else kwargs.get("deadline")
    return isinstance(deadline, QDeadlineTimer) and deadline.isForever()


def _check_seconds(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"{what} must be a non-negative number of seconds, got {value!r}")


# -- the manager's side -----------------------------------------------------------------------


class JobRegistry:
    """A manager's long jobs: strong references while live, supersede keys, statistics.

    Internal (``manager._core.jobs``).  A job is *live* from ``start()`` until its
    outcome has been delivered on the GUI thread and its thread has ended; the registry's
    strong reference is what keeps a job whose last user reference was dropped.
    """

    def __init__(self, core: _ManagerCore) -> None:
        self._core = core
        self.lock = threading.Lock()
        self.live: dict[int, LongJob[Any]] = {}
        self._keys: dict[tuple[OwnerRecord | None, Hashable], LongJob[Any]] = {}
        self._started = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0

    def register(self, job: LongJob[Any]) -> None:
        """Track a job being started; supersede the previous job with its key.  Any thread."""
        core = job._core
        mcore = self._core
        record = core._owner
        superseded: LongJob[Any] | None = None
        with self.lock:
            self.live[core.id] = job
            self._started += 1
            core._registry = self
            if core.key is not None:
                slot = (record, core.key)
                superseded = self._keys.get(slot)
                self._keys[slot] = job
        if record is not None:
            with mcore.lock:
                # The manager cancels everything in record.tasks when the owner dies;
                # a job core answers cancel(reason) like a task.
                record.tasks.add(cast(Any, core))
        if superseded is not None:
            superseded.cancel(reason="superseded")
        for watcher in mcore.watchers:  # views refreshing in batches (TaskTableModel)
            watcher.append(job)
        if mcore.engine.is_gui_thread():
            self._mark_busy()
        else:
            mcore.engine.post(self._mark_busy)

    def _mark_busy(self) -> None:
        mcore = self._core
        facade = mcore.facade()
        if facade is not None and not mcore.busy:
            mcore.set_busy(facade, True)

    def _count_settled(self, state: TaskState) -> None:
        with self.lock:
            if state is _SUCCEEDED:
                self._succeeded += 1
            elif state is _FAILED:
                self._failed += 1
            else:
                self._cancelled += 1

    def release(self, core: _JobCore) -> None:
        """Forget a delivered job whose thread has ended.  GUI thread."""
        mcore = self._core
        with self.lock:
            job = self.live.pop(core.id, None)
            if core.key is not None:
                slot = (core._owner, core.key)
                if self._keys.get(slot) is job:
                    del self._keys[slot]
        record = core._owner
        if record is not None:
            with mcore.lock:
                record.tasks.discard(cast(Any, core))
        if job is None:
            return
        if mcore.busy and not mcore.live and not self.live:
            facade = mcore.facade()
            if facade is not None:
                mcore.set_busy(facade, False)
        del job  # the registry's reference goes here, on the GUI thread

    def live_jobs(self) -> list[LongJob[Any]]:
        """A snapshot of the live jobs, oldest first."""
        with self.lock:
            return list(self.live.values())

    def cancel_all(self, reason: str) -> int:
        """Ask every live job to stop; return how many had not ended."""
        return sum(job._core.cancel(reason=reason) for job in self.live_jobs())

    def join(self, deadline: float) -> tuple[str, ...]:
        """Wait for the jobs' threads until ``time.monotonic()`` passes ``deadline``.

        On the GUI thread, jobs that ended are delivered now (their ``cancelled`` etc.
        is emitted before shutdown returns).  Returns the names of jobs still running;
        they stay parked (never destroyed) and keep their reference.
        """
        gui = self._core.engine.is_gui_thread()
        still: list[str] = []
        for job in self.live_jobs():
            if not job._claimed:
                continue
            remaining = max(0.0, deadline - time.monotonic())
            job._core._open_end_gate()
            if QThread.wait(job, QDeadlineTimer(int(remaining * 1000))):
                if gui:
                    job._on_thread_finished()
            else:
                still.append(f"long job {job.name}")
        return tuple(still)

    def statistics(self) -> JobStatistics:
        """A consistent snapshot of the counters."""
        with self.lock:
            jobs = list(self.live.values())
            started, ok, failed, cancelled = (
                self._started,
                self._succeeded,
                self._failed,
                self._cancelled,
            )
        running = [job for job in jobs if job._core._state is _RUNNING]
        paused = sum(1 for job in running if job._core._paused)
        return JobStatistics(len(jobs), len(running), paused, started, ok, failed, cancelled)
