"""``WorkerManager``: the QObject that owns the named pools and that widgets connect to."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, overload

import shiboken6
from PySide6.QtCore import QCoreApplication, QEventLoop, QMetaMethod, QObject, QTimer, Signal

from ._config import PoolConfig, resolve_pool_configs
from ._engine import DeliveryEngine, get_engine
from ._errors import (
    AlreadyStartedError,
    ConfigurationError,
    ManagerShutdownError,
    UnknownPoolError,
)
from ._introspect import WANTS_CTX, WANTS_PROGRESS_CALLBACK
from ._map import MapHandle
from ._owners import OwnerRecord, check_owner
from ._state import TaskState
from ._task import TaskHandle
from ._threadpool import PoolStatistics, ThreadPool
from ._watchdog import Watchdog
from ._worker import Worker

__all__ = (
    "ManagerStatistics",
    "ShutdownReport",
    "TaskOptions",
    "WorkerManager",
    "default_manager",
    "set_default_manager",
)

logger = logging.getLogger("casare_workers")

T = TypeVar("T")
R = TypeVar("R")

#: How often (at most) statistics_changed is emitted.
STATISTICS_INTERVAL_MS = 100
#: Window over which throughput is measured.
THROUGHPUT_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A frozen snapshot of every pool of a manager.

    Attributes:
        pools: Pool name to :class:`PoolStatistics`.
        live_tasks: Tasks submitted and not yet delivered to the GUI thread.
        busy: True while any task is live.
    """

    pools: dict[str, PoolStatistics]
    live_tasks: int
    busy: bool

    def __getitem__(self, pool: str) -> PoolStatistics:
        return self.pools[pool]


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What ``WorkerManager.shutdown`` did.

    Attributes:
        cancelled: Tasks cancelled by the shutdown (queued or running).
        still_running: Names of functions still executing when the timeout passed.  Their
            threads are daemon threads: they do not hold the process's exit.
        elapsed: Seconds the shutdown took.
    """

    cancelled: int
    still_running: tuple[str, ...]
    elapsed: float

    @property
    def clean(self) -> bool:
        """True if every worker thread stopped within the timeout."""
        return not self.still_running


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options, bound to a manager: ``manager.options(...)`` returns one.

    Options never share a namespace with your function's own keyword arguments, so
    ``manager.options(timeout=5).submit(fetch, url, timeout=30)`` passes ``timeout=30``
    to ``fetch``.  Instances are immutable and reusable.

    Attributes:
        pool: Pool name (default ``"io"``).
        priority: Higher runs first within the pool (default 0).
        owner: A QObject (usually the widget showing the result).  When it is destroyed,
            its queued tasks are cancelled, running ones are asked to stop, and nothing
            is delivered to it any more.
        key: Tasks with the same key (per owner) supersede each other: submitting a new
            one cancels the previous one if it has not ended, so an old reply can never
            arrive after a newer one.
        timeout: Seconds a task may run before it ends with ``TaskTimeoutError``.
        name: A display name (default: the function's qualified name).
    """

    manager: WorkerManager
    pool: str = "io"
    priority: int = 0
    owner_record: OwnerRecord | None = field(default=None, repr=False)
    key: Hashable | None = None
    timeout: float | None = None
    name: str | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        """Submit ``fn(*args, **kwargs)`` with these options (see ``WorkerManager.submit``)."""
        return self.manager._submit(fn, args, kwargs, self)

    def map(
        self, fn: Callable[[Any], R], iterable: Iterable[Any], /, *, chunksize: int | None = None
    ) -> MapHandle[R]:
        """Map ``fn`` over ``iterable`` with these options (see ``WorkerManager.map``)."""
        return self.manager._map(fn, iterable, chunksize, self)

    def start(self, worker: Worker[T]) -> TaskHandle[T]:
        """Start ``worker`` with these options (see ``WorkerManager.start``)."""
        return self.manager._start(worker, self)


class WorkerManager(QObject):
    """Owns named, bounded pools; runs work off the GUI thread; delivers results on it.

    Create it on the GUI thread after the ``QApplication``.  All methods are thread-safe
    unless noted; signals are emitted on the GUI thread.

    Args:
        parent: Optional QObject parent.
        pools: Pool name to size (or :class:`PoolConfig`); overrides the defaults
            ``io``/``cpu``/``background`` and may add pools.  See ``_config``.
        shutdown_timeout: Seconds :meth:`shutdown` waits by default, and at
            ``QCoreApplication.aboutToQuit``.

    Signals:
        task_submitted(object): a TaskHandle was submitted.
        task_started(object): a TaskHandle started running.
        task_finished(object): a TaskHandle's outcome was delivered (after its own
            ``finished``).
        statistics_changed(object): a :class:`ManagerStatistics`, at most 10 times a
            second while something changes.
        busy_changed(bool): True when the first task is submitted, False when the last
            one has been delivered.

    Example:
        >>> manager = WorkerManager()                               # doctest: +SKIP
        >>> handle = manager.options(owner=self, key="search").submit(search, text)
        >>> handle.then(self.show_hits)                             # doctest: +SKIP
    """

    task_submitted = Signal(object)
    task_started = Signal(object)
    task_finished = Signal(object)
    statistics_changed = Signal(object)
    busy_changed = Signal(bool)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        pools: dict[str, int | PoolConfig] | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        engine = get_engine()
        if not engine.is_gui_thread():
            raise RuntimeError(
                "create the WorkerManager on the GUI thread (the QApplication's thread); "
                "worker threads can then use it freely"
            )
        configs = resolve_pool_configs(pools)
        _check_timeout("shutdown_timeout", shutdown_timeout, allow_zero=True)
        super().__init__(parent)
        self._engine: DeliveryEngine = engine
        self._pools: dict[str, ThreadPool] = {
            name: ThreadPool(name, config) for name, config in configs.items()
        }
        self.shutdown_timeout = float(shutdown_timeout)
        self._lock = threading.RLock()
        self._live: dict[int, TaskHandle[Any]] = {}
        self._keys: dict[tuple[OwnerRecord | None, Hashable], TaskHandle[Any]] = {}
        self._owners: dict[int, OwnerRecord] = {}
        self._closed = False
        self._report: ShutdownReport | None = None
        self._busy = False
        self._watchdog = Watchdog("manager")
        self._default_options = TaskOptions(self)
        # One-way flags set by connectNotify: emitting a signal nobody listens to still
        # costs ~2 µs, which matters at 20 000 tasks.
        self._wants_started = False
        self._wants_submitted = False
        self._wants_finished = False
        self._meta_started = QMetaMethod.fromSignal(self.task_started)
        self._meta_submitted = QMetaMethod.fromSignal(self.task_submitted)
        self._meta_finished = QMetaMethod.fromSignal(self.task_finished)
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._last_statistics: ManagerStatistics | None = None
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(STATISTICS_INTERVAL_MS)
        self._stats_timer.timeout.connect(self._publish_statistics)
        app = QCoreApplication.instance()
        assert app is not None
        app.aboutToQuit.connect(self._about_to_quit)
        pools_list = list(self._pools.values())
        watchdog = self._watchdog
        self.destroyed.connect(lambda *_: _abandon(pools_list, watchdog))

    # -- signals bookkeeping ------------------------------------------------------------

    def connectNotify(self, signal: QMetaMethod) -> None:
        """Remember which lifecycle signals have listeners (GUI thread)."""
        if signal == self._meta_started:
            self._wants_started = True
        elif signal == self._meta_submitted:
            self._wants_submitted = True
        elif signal == self._meta_finished:
            self._wants_finished = True

    # -- configuration ---------------------------------------------------------------------

    @property
    def pool_names(self) -> tuple[str, ...]:
        """The names of this manager's pools."""
        return tuple(self._pools)

    @property
    def engine(self) -> DeliveryEngine:
        """The delivery engine this manager delivers through."""
        return self._engine

    def options(
        self,
        *,
        pool: str = "io",
        priority: int = 0,
        owner: QObject | None = None,
        key: Hashable | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> TaskOptions:
        """Return a :class:`TaskOptions` to submit with.  Validates everything now.

        Raises:
            UnknownPoolError: No pool has that name.
            ConfigurationError: ``priority`` is not an int or ``timeout`` is not a
                positive number.
            TypeError: ``owner`` is not a QObject, or ``key`` is not hashable.
        """
        self._pool(pool)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(
                f"priority must be an int (higher runs first), got {priority!r}"
            )
        if timeout is not None:
            _check_timeout("timeout", timeout)
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise TypeError(
                    f"key must be hashable (a string or a tuple of them), got {type(key).__name__}"
                ) from None
        record = self._owner_record(check_owner(owner)) if owner is not None else None
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        return TaskOptions(self, pool, priority, record, key, timeout, name)

    def _pool(self, name: str) -> ThreadPool:
        try:
            return self._pools[name]
        except (KeyError, TypeError):
            raise UnknownPoolError(
                f"no pool named {name!r}; this manager has {', '.join(map(repr, self._pools))} "
                "(add pools with WorkerManager(pools={...}))"
            ) from None

    def _owner_record(self, owner: QObject) -> OwnerRecord:
        key = shiboken6.getCppPointer(owner)[0]
        with self._lock:
            record = self._owners.get(key)
            if record is None or not record.alive:
                record = OwnerRecord(owner, self._owner_died)
                self._owners[key] = record
            return record

    # -- submitting --------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        """Run ``fn(*args, **kwargs)`` on the ``"io"`` pool; return its :class:`TaskHandle`.

        Use :meth:`options` for another pool, a priority, an owner, a key or a timeout.
        If ``fn`` declares a ``ctx`` parameter it receives a :class:`TaskContext`.

        Raises:
            TypeError: ``fn`` is not callable, or you passed ``ctx`` yourself.
            ManagerShutdownError: After :meth:`shutdown`.

        Example:
            >>> handle = manager.submit(read_file, path)       # doctest: +SKIP
            >>> handle.signals.result.connect(self.show_text)  # doctest: +SKIP
        """
        return self._submit(fn, args, kwargs, self._default_options)

    def map(
        self, fn: Callable[[Any], R], iterable: Iterable[Any], /, *, chunksize: int | None = None
    ) -> MapHandle[R]:
        """Apply ``fn`` to every item on the ``"io"`` pool; one handle, results in order.

        Sub-millisecond items are grouped into chunks automatically (or pass
        ``chunksize``).  ``progress`` reports ``(items done, total)``.  The iterable is
        consumed at once (its length is the progress total).

        Example:
            >>> handle = manager.options(pool="cpu").map(thumbnail, paths)  # doctest: +SKIP
            >>> handle.signals.progress.connect(bar.set_progress)           # doctest: +SKIP
        """
        return self._map(fn, iterable, chunksize, self._default_options)

    def start(self, worker: Worker[T]) -> TaskHandle[T]:
        """Run a :class:`Worker` on the ``"io"`` pool; its ``signals`` fire on the GUI thread.

        Raises:
            AlreadyStartedError: The worker was started before.
        """
        return self._start(worker, self._default_options)

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerShutdownError(
                "this WorkerManager has been shut down; work submitted now would never "
                "run. Create a new WorkerManager (shutdown is final)"
            )

    def _submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: TaskOptions,
    ) -> TaskHandle[T]:
        if not callable(fn):
            raise TypeError(
                f"submit() expects a callable as its first argument, got {fn!r} "
                f"({type(fn).__name__}); call it as submit(fn, *args, **kwargs)"
            )
        self._check_open()
        pool = self._pool(opts.pool)
        task: TaskHandle[T] = TaskHandle(fn, args, kwargs, engine=self._engine, name=opts.name)
        if task._ctx_mode == WANTS_CTX and "ctx" in kwargs:
            raise TypeError(
                f"{task.name} declares 'ctx': the task context is passed by the manager, "
                "do not pass ctx= yourself"
            )
        if task._ctx_mode == WANTS_PROGRESS_CALLBACK and "progress_callback" in kwargs:
            raise TypeError(
                f"{task.name} declares 'progress_callback': it is passed by the manager, "
                "do not pass progress_callback= yourself"
            )
        self._enqueue(task, pool, opts, pool.submit)
        return task

    def _map(
        self,
        fn: Callable[[Any], R],
        iterable: Iterable[Any],
        chunksize: int | None,
        opts: TaskOptions,
    ) -> MapHandle[R]:
        if not callable(fn):
            raise TypeError(
                f"map() expects a callable first, got {fn!r} ({type(fn).__name__}); "
                "call it as map(fn, items)"
            )
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise ConfigurationError(f"chunksize must be an int >= 1 or None, got {chunksize!r}")
        try:
            items = list(iterable)
        except TypeError:
            raise TypeError(
                f"map() expects an iterable of items, got {type(iterable).__name__}"
            ) from None
        self._check_open()
        pool = self._pool(opts.pool)
        task: MapHandle[R] = MapHandle(
            fn, items, engine=self._engine, name=opts.name, chunksize=chunksize
        )

        def register(t: TaskHandle[Any], priority: int) -> None:
            pool.register(t)

        self._enqueue(task, pool, opts, register)
        task._launch(pool)
        return task

    def _start(self, worker: Worker[T], opts: TaskOptions) -> TaskHandle[T]:
        if not isinstance(worker, Worker):
            raise TypeError(
                f"start() takes a casare_workers.Worker, got {type(worker).__name__}; "
                "use submit(fn, ...) for plain functions"
            )
        self._check_open()
        pool = self._pool(opts.pool)
        task = worker.handle
        if task._engine is not self._engine:
            raise RuntimeError("this Worker was created for another QApplication")
        with task._lock:
            if task._state is not TaskState.PENDING or task._pool is not None:
                raise AlreadyStartedError(
                    f"Worker {task.name!r} was already started ({task.state.value}); "
                    "a Worker runs once, create a new one"
                )
            task._pool = pool  # claims the worker
        if opts.name is not None:
            task.name = opts.name
        self._enqueue(task, pool, opts, pool.submit)
        return task

    def _enqueue(
        self,
        task: TaskHandle[Any],
        pool: ThreadPool,
        opts: TaskOptions,
        submit: Callable[[TaskHandle[Any], int], None],
    ) -> None:
        task._pool = pool
        task._lock = pool._lock
        task._manager = self
        task._priority = opts.priority
        task._timeout = opts.timeout
        record = opts.owner_record
        superseded: TaskHandle[Any] | None = None
        with self._lock:
            if record is not None:
                if not record.alive:
                    raise ValueError(
                        "the owner of these options has been destroyed; "
                        "submit from a live widget or omit owner"
                    )
                task._owner = record
                record.tasks.add(task)
            if opts.key is not None:
                key = (record, opts.key)
                task._key = opts.key
                superseded = self._keys.get(key)
                self._keys[key] = task
            self._live[task.id] = task
        if superseded is not None:
            superseded.cancel("superseded")
        try:
            submit(task, opts.priority)
        except BaseException:
            with self._lock:
                self._forget(task)
            raise
        self._after_submit(task)

    def _after_submit(self, task: TaskHandle[Any]) -> None:
        if self._engine.is_gui_thread():
            self._on_submitted(task)
        else:
            self._engine.post(lambda: self._on_submitted(task))

    def _on_submitted(self, task: TaskHandle[Any]) -> None:
        if not shiboken6.isValid(self):
            return
        if not self._busy:
            self._set_busy(True)
        if self._wants_submitted:
            self.task_submitted.emit(task)

    # -- GUI-thread bookkeeping (called by the engine through the handles) --------------

    def _task_started(self, task: TaskHandle[Any]) -> None:
        if self._wants_started and shiboken6.isValid(self):
            self.task_started.emit(task)

    def _task_delivered(self, task: TaskHandle[Any]) -> None:
        with self._lock:
            self._forget(task)
            idle = not self._live
        if not shiboken6.isValid(self):
            return
        if self._wants_finished:
            self.task_finished.emit(task)
        if idle and self._busy:
            self._set_busy(False)

    def _forget(self, task: TaskHandle[Any]) -> None:
        # Called with the manager lock held.
        self._live.pop(task.id, None)
        record = task._owner
        if record is not None:
            record.tasks.discard(task)
        if task._key is not None:
            key = (record, task._key)
            if self._keys.get(key) is task:
                del self._keys[key]

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        if busy and not self._stats_timer.isActive() and not self._closed:
            self._stats_timer.start()
        self.busy_changed.emit(busy)

    def _owner_died(self, record: OwnerRecord) -> None:
        # Runs inside the owner's destructor: no locks here (see _owners).
        self._engine.post(lambda: self._cancel_owned(record))

    def _cancel_owned(self, record: OwnerRecord) -> None:
        with self._lock:
            tasks = list(record.tasks)
            for key, value in list(self._owners.items()):
                if value is record:
                    del self._owners[key]
        for task in tasks:
            task.cancel("owner destroyed")

    # -- observing ----------------------------------------------------------------------

    def live_tasks(self) -> list[TaskHandle[Any]]:
        """Tasks submitted and not yet delivered (a snapshot, oldest first)."""
        with self._lock:
            return list(self._live.values())

    def is_idle(self) -> bool:
        """True when every submitted task has been delivered to the GUI thread."""
        with self._lock:
            return not self._live

    def wait_for_done(self, timeout: float) -> bool:
        """Process events on the GUI thread until :meth:`is_idle` or ``timeout`` passes.

        For tests and scripts; GUI code should react to signals instead.

        Returns:
            True if the manager became idle.
        """
        deadline = time.monotonic() + timeout
        gui = self._engine.is_gui_thread()
        while not self.is_idle():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if gui:
                QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
                self._engine.flush()
            else:
                live = self.live_tasks()
                if live:
                    live[0].wait(min(remaining, 0.05))
        return True

    def statistics(self) -> ManagerStatistics:
        """Return a frozen snapshot of every pool's counters."""
        now = time.monotonic()
        pools = {name: pool.statistics() for name, pool in self._pools.items()}
        finished = {name: stats.finished for name, stats in pools.items()}
        with self._lock:
            samples = self._samples
            samples.append((now, finished))
            while len(samples) > 2 and now - samples[1][0] >= THROUGHPUT_WINDOW:
                samples.popleft()
            then, old = samples[0]
            live = len(self._live)
        span = now - then
        if span > 0:
            pools = {
                name: _with_throughput(stats, (stats.finished - old.get(name, 0)) / span)
                for name, stats in pools.items()
            }
        return ManagerStatistics(pools, live, live > 0)

    def _publish_statistics(self) -> None:
        stats = self.statistics()
        if stats != self._last_statistics:
            self._last_statistics = stats
            self.statistics_changed.emit(stats)
        elif not stats.busy:
            self._stats_timer.stop()

    # -- threads ------------------------------------------------------------------------

    def call_in_gui_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` on the GUI thread from any thread; return a ``Future`` of its result.

        Works from QThreads, ``concurrent.futures`` threads and plain
        ``threading.Thread`` s alike (unlike ``QTimer.singleShot(0, fn)``, which needs an
        event loop in the calling thread).  On the GUI thread it runs ``fn`` at once.
        """
        return self._engine.call_in_gui_thread(fn, *args, **kwargs)

    # -- cancelling and shutting down -----------------------------------------------------

    def cancel_all(self) -> int:
        """Cancel every live task.  Returns how many this call cancelled."""
        return sum(task.cancel() for task in self.live_tasks())

    @overload
    def shutdown(self) -> ShutdownReport: ...

    @overload
    def shutdown(
        self, timeout: float | None = None, *, cancel_pending: bool = True
    ) -> ShutdownReport: ...

    def shutdown(
        self, timeout: float | None = None, *, cancel_pending: bool = True
    ) -> ShutdownReport:
        """Stop all work within ``timeout`` seconds; never aborts, never hangs.

        With ``cancel_pending`` (the default) queued tasks are cancelled and running
        ones are asked to stop (they end cancelled at once; ``ctx.cancelled`` turns
        True).  Without it, queued and running work may finish until the timeout, then
        what is left is cancelled.  Finally the outcomes are delivered (on the GUI
        thread) so every task ends with ``finished``.  Functions still running after the
        timeout are listed in the report and logged; their daemon threads do not hold
        the process's exit.  Called automatically at ``QCoreApplication.aboutToQuit``.
        Idempotent: later calls return the first report.
        """
        if self._report is not None:
            return self._report
        timeout = self.shutdown_timeout if timeout is None else timeout
        _check_timeout("timeout", timeout, allow_zero=True)
        began = time.monotonic()
        deadline = began + timeout
        self._closed = True
        pools = list(self._pools.values())
        cancelled = 0
        if cancel_pending:
            for pool in pools:
                pool.close()
                for task in pool.queued_tasks():
                    cancelled += task.cancel("shutdown")
            cancelled += sum(task.cancel("shutdown") for task in self.live_tasks())
            for pool in pools:
                pool.stop_threads()
        else:
            for pool in pools:
                pool.stop_threads()  # threads exit once the queue is drained
        for pool in pools:
            pool.join(deadline)
        if not cancel_pending:
            cancelled += sum(task.cancel("shutdown") for task in self.live_tasks())
        still = tuple(item._task.name for pool in pools for item in list(pool._current.values()))
        self._watchdog.stop()
        if self._engine.is_gui_thread() and shiboken6.isValid(self._engine):
            self._engine.flush()
        if shiboken6.isValid(self):
            self._stats_timer.stop()
        report = ShutdownReport(cancelled, still, time.monotonic() - began)
        if still:
            logger.warning(
                "shutdown: %d function(s) still running after %.1f s and left to finish "
                "on daemon threads: %s",
                len(still),
                timeout,
                ", ".join(still),
            )
        self._report = report
        return report

    def _about_to_quit(self) -> None:
        self.shutdown()

    def threads(self) -> list[threading.Thread]:
        """Every live worker thread of every pool (for leak checks in tests)."""
        return [thread for pool in self._pools.values() for thread in pool.threads()]

    def __enter__(self) -> WorkerManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else ("busy" if self._busy else "idle")
        return f"<WorkerManager pools={list(self._pools)} {state}>"


def _with_throughput(stats: PoolStatistics, throughput: float) -> PoolStatistics:
    return replace(stats, throughput=round(max(0.0, throughput), 1))


def _check_timeout(what: str, value: object, *, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigurationError(
            f"{what} must be a {'non-negative' if allow_zero else 'positive'} number of "
            f"seconds, got {value!r}"
        )


def _abandon(pools: list[ThreadPool], watchdog: Watchdog) -> None:
    """The manager QObject was destroyed without shutdown: stop accepting, free threads."""
    for pool in pools:
        pool.stop_threads()
    watchdog.stop()


_default: WorkerManager | None = None
_default_lock = threading.Lock()


def default_manager() -> WorkerManager:
    """Return the process-wide manager, creating it on first use (on the GUI thread).

    Apps with one window tree usually want exactly one set of bounded pools (the seed
    note's open question 1): one place to size them, to watch them and to shut them
    down.  Libraries and tests should accept a manager instead of reaching for this.
    """
    global _default
    with _default_lock:
        manager = _default
        if manager is None or not shiboken6.isValid(manager) or manager._closed:
            manager = _default = WorkerManager()
        return manager


def set_default_manager(manager: WorkerManager | None) -> None:
    """Replace (or clear, with None) the process-wide manager."""
    global _default
    with _default_lock:
        _default = manager
