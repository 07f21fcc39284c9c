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

The thread's life (start, run, finished, delivery) is drawn in ``_jobthread``.

Cancellation is cooperative (Python threads cannot be killed): ``cancel()`` sets the
context's flag, calls ``requestInterruption()``, wakes ``ctx.wait``/checkpoints and, for
the async form, cancels the job's asyncio task.  The job ends *when its work returns*;
``stop(timeout)`` waits for that, bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Hashable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar, Generic, TypeVar, cast, overload

from PySide6.QtCore import (
    QDeadlineTimer,
    QObject,
    QThread,
    Signal,
)

from .._core._failure import TaskFailure
from .._core._state import TaskState
from .._engine import get_engine
from .._errors import BlockingCallError
from .._manager import WorkerManager, default_manager, manager_core
from .._owners import check_owner
from .._validation import check_seconds
from ._context import JobContext
from ._host import JobHost
from ._jobcore import JobCore
from ._jobthread import JobThread
from ._registry import registry_of
from ._work import JobWork

__all__ = ("DEFAULT_STOP_TIMEOUT", "LongJob")

T = TypeVar("T")

#: Seconds ``stop()`` waits when no timeout is given.
DEFAULT_STOP_TIMEOUT = 5.0


class LongJob(JobThread, Generic[T]):
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
        error(object): a :class:`~casare_workers.TaskFailure` (exception + formatted
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

    Names: what a :class:`~casare_workers.TaskHandle` also has is named as there
    (``failure``, ``progress_value``, ``status_text``, ``exception(timeout)``,
    ``future``, ``add_done_callback``, ``cancel(reason=...)``), except where a Qt signal
    or ``QThread`` holds the name: the blocking result is :meth:`get` (``result`` is the
    signal), and :meth:`wait` is ``QThread.wait`` (milliseconds).

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
        work = JobWork.parse(
            type(self), self.work if overridden else None, positional, args, kwargs
        )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise TypeError(
                    f"key must be hashable (a string or a tuple of them), got {type(key).__name__}"
                ) from None
        if manager is not None and not isinstance(manager, WorkerManager):
            raise TypeError(f"manager must be a WorkerManager, got {type(manager).__name__}")
        engine = get_engine()
        super().__init__(engine)
        host: JobHost = manager_core(manager if manager is not None else default_manager())
        self._host = host
        self._core = JobCore(
            self,
            self,
            engine,
            name if name is not None else work.default_name,
            key=key,
            owner_record=host.owner_record(check_owner(owner)) if owner is not None else None,
            interrupt_async=type(self).cancel_async_task,
        )
        self._work = work

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
        record = self._core.owner_record
        return record.get() if record is not None else None

    @property
    def state(self) -> TaskState:
        """PENDING, RUNNING, then SUCCEEDED, FAILED or CANCELLED."""
        return self._core.state

    @property
    def cancel_reason(self) -> str | None:
        """Why the job was cancelled ("cancelled", "superseded", "shutdown", ...), or None."""
        return self._core.cancel_reason

    @property
    def progress_value(self) -> tuple[int, int]:
        """The latest ``(current, total)`` the work reported; ``(0, 0)`` before any report.

        A total of 0 means "unknown", as in ``ctx.progress``.  Any thread, any time.
        """
        return self._core.progress_value

    @property
    def status_text(self) -> str:
        """The latest status text the work reported; ``""`` before any.  Any time."""
        return self._core.status_text

    @property
    def elapsed(self) -> float:
        """Seconds the work has been running (or ran); 0.0 before it starts."""
        return self._core.elapsed

    @property
    def eta(self) -> float | None:
        """Estimated seconds until done, or None when it cannot be estimated.

        The rate is measured over the last ``ETA_WINDOW`` (10) seconds of delivered
        progress (so a slow start does not skew it), falling back to the average since
        the start.  Needs a known total (``total > 0``).
        """
        return self._core.eta

    @property
    def failure(self) -> TaskFailure | None:
        """The :class:`~casare_workers.TaskFailure` of a failed job, else None."""
        return self._core.failure()

    def done(self) -> bool:
        """True once the outcome is decided (the thread may be finishing its last steps)."""
        return self._core.done()

    @property
    def paused(self) -> bool:
        """True while the job is asked to pause (a property, like ``ctx.paused``)."""
        return self._core.paused

    @property
    def ctx(self) -> JobContext:
        """A :class:`JobContext` for this job (for ``work`` methods that do not declare one)."""
        return JobContext(self._core)

    # -- starting -----------------------------------------------------------------------------

    def start(self, priority: QThread.Priority = QThread.Priority.InheritPriority) -> None:
        """Start the job's thread.  A job runs once.  Any thread (usually the GUI thread).

        Raises:
            AlreadyStartedError: The job was started before, or cancelled before starting.
            ManagerShutdownError: The manager has been shut down.
            ValueError: The owner has been destroyed.
        """
        core = self._core
        core.claim()
        try:
            self._host.check_open()
            record = core.owner_record
            if record is not None and not record.alive:
                raise ValueError(
                    "the owner of this job has been destroyed; start jobs from a live "
                    "widget or omit owner"
                )
            registry_of(self._host).register(self, core)
        except BaseException:
            core.unclaim()
            raise
        self._launch(priority)

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

        Raises:
            ConfigurationError: ``timeout`` is not a finite number of seconds >= 0 (the
                job is left as it was).
        """
        check_seconds("timeout", timeout, allow_zero=True)
        self._core.cancel()
        return self.join_thread(timeout)

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
        self._core.open_end_gate()
        return QThread.wait(self, *args, **kwargs)

    # -- outcome for other threads and coroutines ---------------------------------------------

    def get(self, timeout: float | None = None) -> T:
        """Return the work's result, blocking up to ``timeout`` seconds.

        Raises:
            Exception: The work's own exception, unchanged (traceback included).
            TaskCancelledError: The job was cancelled.
            TimeoutError: The job did not end within ``timeout``.
            BlockingCallError: Called on the GUI thread with no timeout before the end.
            ConfigurationError: ``timeout`` is not a finite number of seconds >= 0 or None.
        """
        check_seconds("timeout", timeout, allow_zero=True, allow_none=True)
        return cast(T, self._core.result(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the work's exception (None if it succeeded), blocking like :meth:`get`.

        Reading it counts as taking note of the failure (it is then not logged as
        unretrieved), as for :attr:`failure`.

        Raises:
            TaskCancelledError: The job was cancelled.
            TimeoutError: The job did not end within ``timeout``.
            BlockingCallError: Called on the GUI thread with no timeout before the end.
            ConfigurationError: ``timeout`` is not a finite number of seconds >= 0 or None.
        """
        check_seconds("timeout", timeout, allow_zero=True, allow_none=True)
        return self._core.exception(timeout)

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
        raises ``asyncio.CancelledError`` in the awaiter.  See ``casare_workers._bridge``.
        """
        from .._bridge._await import await_job  # the bridge: imported on use

        return cast(Generator[Any, None, T], await_job(self))

    def add_done_callback(self, fn: Callable[[LongJob[T]], object]) -> None:
        """Call ``fn(job)`` on the thread that decides the outcome (or now if decided).

        That is the job thread, or the caller of ``cancel()`` for a job that never
        started.  Low-level (for the asyncio bridge); GUI code wants the signals.

        Raises:
            TypeError: ``fn`` is not callable (now, not as a logged error at the end).
        """
        self._core.add_done_callback(fn)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self._core.id} {self._core.name!r} {self.state.value}>"


def _is_forever(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    deadline = args[0] if args else kwargs.get("deadline")
    return isinstance(deadline, QDeadlineTimer) and deadline.isForever()
