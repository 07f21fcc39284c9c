"""``ManagerCore``: everything a manager does, in a plain object.

``WorkerManager`` (``_facade``) is only the QObject face; the core tells it what
changed through the :class:`ManagerFace` protocol (its signals) and a weak reference
to its statistics timer's start.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

import shiboken6
from PySide6.QtCore import (
    QCoreApplication,
    QEventLoop,
    QObject,
    SignalInstance,
)

from .._closing import watch_window
from .._config import PoolConfig
from .._core._handle import TaskHandle
from .._engine import DeliveryEngine
from .._errors import (
    ConfigurationError,
    ManagerShutdownError,
    UnknownPoolError,
)
from .._introspect import WANTS_CTX, WANTS_PROGRESS_CALLBACK, call_mode, positional_slot
from .._owners import OwnerRecord, check_owner
from .._pools._map import MapHandle
from .._pools._pool import Pool, build_pool
from .._validation import check_priority, check_seconds
from .._watchdog import Watchdog
from .._worker import Worker
from ._lifecycle import (
    event_loop_running,
    interpreter_exiting,
)
from ._options import KEY_POLICIES, KeyPolicy, TaskOptions
from ._stats import (
    THROUGHPUT_WINDOW,
    JobTracker,
    ManagerStatistics,
    NoJobs,
    ShutdownReport,
    with_throughput,
)

__all__ = ("ManagerCore", "ManagerFace")

logger = logging.getLogger("casare_workers")

T = TypeVar("T")
R = TypeVar("R")


class _OwnerCloser:
    """Cancels an owner's tasks and long jobs when its window is closed (``_closing``)."""

    __slots__ = ("__weakref__", "_core", "_record")

    def __init__(self, core: ManagerCore, record: OwnerRecord) -> None:
        self._core = weakref.ref(core)  # no cycle: the core holds this object
        self._record = record

    def window_closed(self, reason: str) -> None:
        """Runs on the GUI thread."""
        core = self._core()
        if core is None:
            return
        with core.lock:
            tasks = list(self._record.tasks)
        for task in tasks:
            task.cancel(reason="window closed")


class ManagerFace(Protocol):
    """What the core tells its QObject face (``WorkerManager``): its signals."""

    @property
    def task_submitted(self) -> SignalInstance:
        """A TaskHandle was submitted."""

    @property
    def task_started(self) -> SignalInstance:
        """A TaskHandle started running."""

    @property
    def task_finished(self) -> SignalInstance:
        """A TaskHandle's outcome was delivered."""

    @property
    def busy_changed(self) -> SignalInstance:
        """The first task was submitted (True) or the last one delivered (False)."""


class ManagerCore:
    """Everything a manager does, in a plain object.

    ``WorkerManager`` is only the QObject face (signals, parent, ``aboutToQuit``): calling
    a method of a PySide ``QObject`` subclass costs ~0.3 µs against ~0.05 µs here, and
    submit, start, delivery and bookkeeping run for every task.
    """

    def __init__(
        self,
        facade: ManagerFace,
        engine: DeliveryEngine,
        configs: dict[str, PoolConfig],
        shutdown_timeout: float,
        start_statistics: weakref.WeakMethod[Callable[[], None]],
    ) -> None:
        self._facade = weakref.ref(facade)
        # The face's statistics timer's start, held weakly (the face holds the core).
        self._statistics_starter = start_statistics
        self.engine = engine
        # -- issue 5: a pool's kind picks its backend (thread, process, dask) ------------
        self.pools: dict[str, Pool] = {}
        try:
            for name, config in configs.items():
                self.pools[name] = build_pool(name, config)
        except BaseException:
            for pool in self.pools.values():  # pools are lazy: this frees no process
                pool.stop()
            raise
        # -- end issue 5 ---------------------------------------------------------------
        self.shutdown_timeout = shutdown_timeout
        #: ``time.monotonic()`` of the application's last ``aboutToQuit`` (see quit_deadline).
        self.quit_at: float | None = None
        self.lock = threading.RLock()
        self.live: dict[int, TaskHandle[Any]] = {}
        self.keys: dict[tuple[OwnerRecord | None, Hashable], TaskHandle[Any]] = {}
        #: The owner record and key of every live task submitted with either.
        self.owned: dict[int, tuple[OwnerRecord | None, Hashable | None]] = {}
        self.owners: dict[int, OwnerRecord] = {}
        # The window-close listener of each record (held here: _closing holds it weakly).
        self.closers: dict[OwnerRecord, _OwnerCloser] = {}
        self.closed = interpreter_exiting()  # made during exit: refuses work (check_open)
        self.report: ShutdownReport | None = None
        self.busy = False
        self._watchdog = Watchdog("manager")
        self.default_options = TaskOptions(self)
        # One-way flags set by the face's connectNotify: emitting a signal nobody listens
        # to still costs ~2 µs, which matters at 20 000 tasks.
        #: True if something listens to ``task_started`` (the TaskHost protocol).
        self.wants_started = False
        self.wants_submitted = False
        self.wants_finished = False
        self.samples: deque[tuple[float, dict[str, int]]] = deque()
        # Deques that receive every submitted task (item models drain them in batches).
        self.watchers: list[deque[Any]] = []  # TaskHandles and LongJobs
        #: The long jobs: every started LongJob, held until delivered.  The jobs package
        #: installs its registry here when the first job starts (see JobTracker).
        self.jobs: JobTracker = NoJobs()

    def facade(self) -> ManagerFace | None:
        """The WorkerManager QObject, while it exists."""
        facade = self._facade()
        if facade is None or not shiboken6.isValid(facade):
            return None
        return facade

    # -- options --------------------------------------------------------------------------

    def options(
        self,
        pool: str,
        priority: int,
        owner: QObject | None,
        key: Hashable | None,
        timeout: float | None,
        name: str | None,
        key_policy: str = "supersede",
    ) -> TaskOptions:
        self.pool(pool)
        check_priority(priority)
        if timeout is not None:
            check_seconds("timeout", timeout)
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise TypeError(
                    f"key must be hashable (a string or a tuple of them), got {type(key).__name__}"
                ) from None
        if key_policy not in KEY_POLICIES:
            raise ConfigurationError(
                f"key_policy must be one of {', '.join(map(repr, KEY_POLICIES))}, "
                f"got {key_policy!r}"
            )
        if key_policy != "supersede" and key is None:
            raise ConfigurationError(
                f"key_policy={key_policy!r} needs a key: it decides what a second task "
                "with the same key does (e.g. options(key='models', key_policy='join'))"
            )
        record = self.owner_record(check_owner(owner)) if owner is not None else None
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        policy = cast(KeyPolicy, key_policy)
        return TaskOptions(self, pool, priority, record, key, timeout, name, policy)

    def pool(self, name: str) -> Pool:
        try:
            return self.pools[name]
        except (KeyError, TypeError):
            raise UnknownPoolError(
                f"no pool named {name!r}; this manager has {', '.join(map(repr, self.pools))} "
                "(add pools with WorkerManager(pools={...}))"
            ) from None

    def owner_record(self, owner: QObject) -> OwnerRecord:
        key = shiboken6.getCppPointer(owner)[0]
        with self.lock:
            record = self.owners.get(key)
            if record is not None and record.alive:
                return record
            record = OwnerRecord(owner, self._owner_died)
            self.owners[key] = record
            closer = self.closers[record] = _OwnerCloser(self, record)
        # The other half of owner=: the owner's window closing ends its work too.
        watch_window(owner, closer)
        return record

    # -- submitting -----------------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed and interpreter_exiting():
            raise ManagerShutdownError(
                "the interpreter is exiting (this was submitted from an atexit hook, or "
                "after the main module returned): work submitted now could never run or "
                "be delivered. Submit it before the application quits"
            )
        if self.closed:
            raise ManagerShutdownError(
                "this WorkerManager has been shut down; work submitted now would never "
                "run. Create a new WorkerManager (shutdown is final)"
            )

    def submit(
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
        if self.closed:
            self.check_open()
        pool = self.pool(opts.pool)
        if opts.key_policy == "join":
            joined = self.in_flight(opts)
            if joined is not None:
                return joined
        mode = call_mode(fn)
        task: TaskHandle[T] = TaskHandle(fn, args, kwargs, self.engine, opts.name, mode=mode)
        if mode:
            if mode == WANTS_CTX and ("ctx" in kwargs or (args and _fills_ctx(fn, args))):
                raise TypeError(
                    f"{task.name} declares 'ctx': the task context is passed by the manager, "
                    "do not pass ctx yourself (by keyword, or as one positional argument "
                    "too many)"
                )
            if mode == WANTS_PROGRESS_CALLBACK and "progress_callback" in kwargs:
                raise TypeError(
                    f"{task.name} declares 'progress_callback': it is passed by the manager, "
                    "do not pass progress_callback= yourself"
                )
        joined = self.enqueue(task, pool, opts, pool.submit)
        if joined is not None:  # the new task was never queued: it is dropped here
            return cast("TaskHandle[T]", joined)
        return task

    def map(
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
        self.check_open()
        pool = self.pool(opts.pool)
        task: MapHandle[R] = MapHandle(
            fn, items, engine=self.engine, name=opts.name, chunksize=chunksize
        )
        self.enqueue(task, pool, opts, pool.submit_map)  # type: ignore[arg-type]
        return task

    def start(self, worker: Worker[T], opts: TaskOptions) -> TaskHandle[T]:
        if not isinstance(worker, Worker):
            raise TypeError(
                f"start() takes a casare_workers.Worker, got {type(worker).__name__}; "
                "use submit(fn, ...) for plain functions"
            )
        self.check_open()
        pool = self.pool(opts.pool)
        task = worker.handle
        own = task.owner_record  # worker.owner, set before starting
        if own is not None:
            owner = own.get()
            if opts.owner_record is None:
                if owner is not None:  # the manager watches it too (keys, queued tasks)
                    opts = replace(opts, owner_record=self.owner_record(owner))
            elif opts.owner_record.get() is not owner:
                raise ValueError(
                    f"Worker {task.name!r} has an owner of its own (worker.owner) and the "
                    "options name another; give the owner in one place"
                )
        if opts.name is not None:
            task.name = opts.name
        self.enqueue(task, pool, opts, pool.submit)
        return task

    def enqueue(
        self,
        task: TaskHandle[Any],
        pool: Pool,
        opts: TaskOptions,
        submit: Callable[[TaskHandle[Any], int], None],
    ) -> TaskHandle[Any] | None:
        """Queue ``task`` on ``pool`` with ``opts``; return None when it was queued.

        With ``key_policy="join"``, a task in flight under the same key is returned
        instead and ``task`` is not queued (the check and the queueing are one step
        under the lock, so two threads cannot both start the request).
        """
        record = opts.owner_record
        # Claims the task (a Worker runs once: AlreadyStartedError on a second start).
        task.bind(
            pool,
            self,
            self.engine,
            priority=opts.priority,
            timeout=opts.timeout,
            owner=record,
            key=opts.key,
        )
        superseded: TaskHandle[Any] | None = None
        if record is not None or opts.key is not None:
            with self.lock:
                if record is not None:
                    if not record.alive:
                        raise ValueError(
                            "the owner of these options has been destroyed; "
                            "submit from a live widget or omit owner"
                        )
                if opts.key is not None:
                    key = (record, opts.key)
                    superseded = self.keys.get(key)
                    if (
                        opts.key_policy == "join"
                        and superseded is not None
                        and not superseded.done()
                    ):
                        # Another thread submitted the same request meanwhile: join it.
                        return superseded
                    self.keys[key] = task
                if record is not None:
                    record.tasks.add(task)
                self.owned[task.id] = (record, opts.key)
        # A single dict store is atomic under the GIL: no lock on the plain path.
        self.live[task.id] = task
        if self.watchers:
            for watcher in self.watchers:
                watcher.append(task)
        try:
            submit(task, opts.priority)
        except BaseException:
            with self.lock:
                self.forget(task)
                if (
                    superseded is not None
                    and not superseded.done()
                    and self.keys.get((record, opts.key)) is None
                ):
                    # The refused task never replaced anything: the previous one goes on.
                    self.keys[(record, opts.key)] = superseded
            raise
        # After the pool accepted the new task: a refused submit (unpicklable arguments,
        # a closed pool) must not cancel the task it would have replaced.
        if superseded is not None:
            superseded.cancel(reason="superseded")
        if not self.busy or self.wants_submitted:
            if self.engine.is_gui_thread():
                self.on_submitted(task)
            else:
                self.engine.post(lambda: self.on_submitted(task))
        return None

    def in_flight(self, opts: TaskOptions) -> TaskHandle[Any] | None:
        """The task queued or running under ``opts``' key (and owner), if any."""
        with self.lock:
            task = self.keys.get((opts.owner_record, opts.key))
        if task is None or task.done():
            return None
        return task

    def on_submitted(self, task: TaskHandle[Any]) -> None:
        facade = self.facade()
        if facade is None:
            return
        if not self.busy:
            self.set_busy(facade, True)
        if self.wants_submitted:
            facade.task_submitted.emit(task)

    # -- GUI-thread bookkeeping (called by the handles through the engine) -----------------

    # The TaskHost protocol (casare_workers._core._host): what tasks tell the manager.

    def task_started(self, task: TaskHandle[Any]) -> None:
        """Emit ``task_started`` (GUI thread)."""
        facade = self.facade()
        if facade is not None:
            facade.task_started.emit(task)

    def watch_timeout(self, task: TaskHandle[Any], seconds: float) -> None:
        """Time ``task`` out after ``seconds`` unless it ended (any thread)."""
        self._watchdog.watch(task, seconds)

    def task_delivered(self, task: TaskHandle[Any]) -> None:
        """Forget a delivered task; update ``busy`` and ``task_finished`` (GUI thread)."""
        if task.id in self.owned:
            with self.lock:
                self.forget(task)
        else:
            self.live.pop(task.id, None)
        if self.wants_finished or (self.busy and not self.live and not self.jobs.live):
            facade = self.facade()
            if facade is None:
                return
            if self.wants_finished:
                facade.task_finished.emit(task)
            if self.busy and not self.live and not self.jobs.live:
                self.set_busy(facade, False)
                if self.live:  # a worker thread submitted while we flipped (it saw busy)
                    self.set_busy(facade, True)

    def forget(self, task: TaskHandle[Any]) -> None:
        # Called with the lock held.
        self.live.pop(task.id, None)
        record, key = self.owned.pop(task.id, (None, None))
        if record is not None:
            record.tasks.discard(task)
        if key is not None:
            if self.keys.get((record, key)) is task:
                del self.keys[(record, key)]

    def update_busy(self) -> None:
        """A long job started or was released: set ``busy`` from what is live (GUI thread)."""
        facade = self.facade()
        if facade is None:
            return
        busy = bool(self.live) or self.jobs.live > 0
        if busy != self.busy:
            self.set_busy(facade, busy)

    def set_busy(self, facade: ManagerFace, busy: bool) -> None:
        self.busy = busy
        if busy and not self.closed:
            start_statistics = self._statistics_starter()
            if start_statistics is not None:
                start_statistics()
        facade.busy_changed.emit(busy)

    def _owner_died(self, record: OwnerRecord) -> None:
        # Runs inside the owner's destructor: no locks here (see _owners).
        self.engine.post(lambda: self._cancel_owned(record))

    def _cancel_owned(self, record: OwnerRecord) -> None:
        with self.lock:
            tasks = list(record.tasks)
            for key, value in list(self.owners.items()):
                if value is record:
                    del self.owners[key]
            self.closers.pop(record, None)
        for task in tasks:
            task.cancel(reason="owner destroyed")

    # -- observing ----------------------------------------------------------------------

    def live_tasks(self) -> list[TaskHandle[Any]]:
        with self.lock:
            return list(self.live.values())

    def wait_idle(self, deadline: float) -> bool:
        """Wait until nothing is in flight or ``deadline`` (``time.monotonic``) passes.

        On the GUI thread it processes events (deliveries come through them); elsewhere
        it waits on the oldest live task.  Returns True if nothing is in flight.
        """
        gui = self.engine.is_gui_thread()
        while self.live or self.jobs.live:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if gui:
                QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
                self.engine.flush()
            else:
                live = self.live_tasks()
                if live:
                    live[0].wait(min(remaining, 0.05))
                elif self.jobs.live:
                    time.sleep(min(remaining, 0.01))  # jobs are delivered by the GUI thread
        return True

    def statistics(self) -> ManagerStatistics:
        now = time.monotonic()
        pools = {name: pool.statistics() for name, pool in self.pools.items()}
        finished = {name: stats.finished for name, stats in pools.items()}
        with self.lock:
            samples = self.samples
            samples.append((now, finished))
            while len(samples) > 2 and now - samples[1][0] >= THROUGHPUT_WINDOW:
                samples.popleft()
            then, old = samples[0]
            live = len(self.live)
        span = now - then
        if span > 0:
            pools = {
                name: with_throughput(stats, (stats.finished - old.get(name, 0)) / span)
                for name, stats in pools.items()
            }
        jobs = self.jobs.statistics()
        return ManagerStatistics(pools, live, live > 0 or jobs.live > 0, jobs)

    # -- shutting down --------------------------------------------------------------------

    def quit_deadline(self) -> float:
        """When a wait made on the application's way out must end (``time.monotonic``).

        The application quits in steps that each wait a bounded time (the loop's
        executor when the loop closes, then this manager at exit): they share one
        deadline, ``shutdown_timeout`` after the last ``aboutToQuit``, so the whole exit
        takes about ``shutdown_timeout``, not that once per step.  While an event loop
        runs again (a second ``run_until_complete``), waits get their full timeout.
        """
        deadline = time.monotonic() + self.shutdown_timeout
        quit_at = self.quit_at
        if quit_at is not None and not event_loop_running():
            deadline = min(deadline, quit_at + self.shutdown_timeout)
        return deadline

    def shutdown(
        self,
        timeout: float | None,
        cancel_pending: bool,
        *,
        deliver: bool = True,
        automatic: bool = False,
    ) -> ShutdownReport:
        if self.report is not None:
            return self.report
        timeout = self.shutdown_timeout if timeout is None else timeout
        check_seconds("timeout", timeout, allow_zero=True)
        began = time.monotonic()
        deadline = self.quit_deadline() if automatic else began + timeout
        self.closed = True
        pools = list(self.pools.values())
        cancelled = 0
        if cancel_pending:
            for pool in pools:
                pool.close()
                for task in pool.queued_tasks():
                    cancelled += task.cancel(reason="shutdown")
            cancelled += sum(task.cancel(reason="shutdown") for task in self.live_tasks())
            cancelled += self.jobs.cancel_all("shutdown")  # long jobs (issue 3)
        for pool in pools:
            pool.stop()  # without cancel_pending, threads drain the queue first
        for pool in pools:
            pool.join(deadline)
        if not cancel_pending:
            cancelled += sum(task.cancel(reason="shutdown") for task in self.live_tasks())
        # -- long jobs (issue 3): cancelled above (or now), joined within the same
        # deadline; a job still running stays parked (never destroyed, never terminated).
        if not cancel_pending:
            cancelled += self.jobs.cancel_all("shutdown")
        still_jobs = self.jobs.join(deadline)
        # -- end long jobs
        still = tuple(name for pool in pools for name in pool.still_running()) + still_jobs
        self._watchdog.stop()
        if deliver and self.engine.is_gui_thread() and self.engine.is_valid():
            self.engine.flush()
        report = ShutdownReport(cancelled, still, time.monotonic() - began)
        if still:
            logger.warning(
                "shutdown: %d function(s) still running after %.1f s and left to finish "
                "on daemon threads: %s",
                len(still),
                timeout,
                ", ".join(still),
            )
        self.report = report
        return report

    def abandon(self) -> None:
        """The QObject was destroyed without a shutdown (any thread, no waiting).

        Refuse work, cancel every task and long job (nobody is left to receive their
        outcome; running functions see ``ctx.cancelled``), and let the threads exit.
        """
        if self.closed:
            return
        self.closed = True
        for pool in self.pools.values():
            pool.close()
            for task in pool.queued_tasks():
                task.cancel(reason="manager destroyed")
        for task in self.live_tasks():
            task.cancel(reason="manager destroyed")
        for pool in self.pools.values():
            pool.stop()
        self._watchdog.stop()
        self.jobs.cancel_all("manager destroyed")


def _fills_ctx(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """True if ``args`` reach ``fn``'s positional ``ctx`` parameter (the manager's to pass)."""
    slot = positional_slot(fn, "ctx")
    return slot is not None and len(args) > slot
