"""``Hosting``: the manager as its work's host: pools, what tasks report, busy, the end.

The middle layer of the manager's core (``TaskBook`` ─► ``Hosting`` ─► ``ManagerCore``).
It implements the ``TaskHost`` protocol (``casare_workers._core._host``) and tells the
QObject face, known only as a :class:`ManagerFace`, what changed::

    task starts (worker thread) ─► engine ─► task_started ─► face.task_started
    task delivered (GUI thread) ─► task_delivered: forget it ─► face.task_finished,
                                   busy False once nothing is live ─► face.busy_changed
    task submitted ─► on_submitted: busy True ─► face.busy_changed, face.task_submitted
    shutdown(timeout) ─► pools closed, tasks and jobs cancelled, threads joined until
                         one deadline ─► outcomes delivered ─► ShutdownReport
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import shiboken6
from PySide6.QtCore import SignalInstance

from .._config import PoolConfig
from .._core._handle import TaskHandle
from .._engine import DeliveryEngine
from .._errors import ManagerShutdownError, UnknownPoolError
from .._pools._pool import Pool, build_pool
from .._validation import check_seconds
from .._watchdog import Watchdog
from ._book import TaskBook
from ._lifecycle import event_loop_running, interpreter_exiting
from ._stats import THROUGHPUT_WINDOW, ManagerStatistics, ShutdownReport, with_throughput

__all__ = ("Hosting", "ManagerFace")

logger = logging.getLogger("casare_workers")


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


class Hosting(TaskBook):
    """A manager's pools and state, and what its tasks and its face see of it.

    Args:
        facade: The QObject face (held weakly: it holds the core).
        engine: The delivery engine the tasks are delivered through.
        configs: Pool name to its configuration; a pool's kind picks its backend
            (thread, process, Dask).
        shutdown_timeout: Seconds a shutdown waits by default.
        start_statistics: The face's statistics timer's start, held weakly: called when
            the manager becomes busy.
    """

    def __init__(
        self,
        facade: ManagerFace,
        engine: DeliveryEngine,
        configs: dict[str, PoolConfig],
        shutdown_timeout: float,
        start_statistics: weakref.WeakMethod[Callable[[], None]],
    ) -> None:
        super().__init__(engine)
        self._facade = weakref.ref(facade)
        self._statistics_starter = start_statistics
        self.pools: dict[str, Pool] = {}
        try:
            for name, config in configs.items():
                self.pools[name] = build_pool(name, config)
        except BaseException:
            for pool in self.pools.values():  # pools are lazy: this frees no process
                pool.stop()
            raise
        self.shutdown_timeout = shutdown_timeout
        #: ``time.monotonic()`` of the application's last ``aboutToQuit`` (see quit_deadline).
        self.quit_at: float | None = None
        self.closed = interpreter_exiting()  # made during exit: refuses work (check_open)
        self.report: ShutdownReport | None = None
        self.busy = False
        self._watchdog = Watchdog("manager")
        # One-way flags set by the face's connectNotify: emitting a signal nobody listens
        # to still costs ~2 µs, which matters at 20 000 tasks.
        #: True if something listens to ``task_started`` (the TaskHost protocol).
        self.wants_started = False
        self.wants_submitted = False
        self.wants_finished = False
        self.samples: deque[tuple[float, dict[str, int]]] = deque()

    def facade(self) -> ManagerFace | None:
        """The WorkerManager QObject, while it exists."""
        facade = self._facade()
        if facade is None or not shiboken6.isValid(facade):
            return None
        return facade

    def pool(self, name: str) -> Pool:
        """The pool called ``name`` (``UnknownPoolError`` naming the pools if none)."""
        try:
            return self.pools[name]
        except (KeyError, TypeError):
            raise UnknownPoolError(
                f"no pool named {name!r}; this manager has {', '.join(map(repr, self.pools))} "
                "(add pools with WorkerManager(pools={...}))"
            ) from None

    def check_open(self) -> None:
        """Raise ``ManagerShutdownError`` if the manager refuses new work."""
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

    def on_submitted(self, task: TaskHandle[Any]) -> None:
        """A task was queued: set ``busy``, emit ``task_submitted`` (GUI thread)."""
        facade = self.facade()
        if facade is None:
            return
        if not self.busy:
            self.set_busy(facade, True)
        if self.wants_submitted:
            facade.task_submitted.emit(task)

    def update_busy(self) -> None:
        """A long job started or was released: set ``busy`` from what is live (GUI thread)."""
        facade = self.facade()
        if facade is None:
            return
        busy = bool(self.live) or self.jobs.live > 0
        if busy != self.busy:
            self.set_busy(facade, busy)

    def set_busy(self, facade: ManagerFace, busy: bool) -> None:
        """Set ``busy`` and emit ``busy_changed`` (GUI thread)."""
        self.busy = busy
        if busy and not self.closed:
            start_statistics = self._statistics_starter()
            if start_statistics is not None:
                start_statistics()
        facade.busy_changed.emit(busy)

    # -- observing ----------------------------------------------------------------------

    def statistics(self) -> ManagerStatistics:
        """A frozen snapshot of every pool, with throughput, and of the long jobs."""
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
        """Stop all work within ``timeout`` (see ``WorkerManager.shutdown``); idempotent.

        ``automatic``: the final shutdown at exit, which shares the quit's deadline.
        """
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
            cancelled += self.jobs.cancel_all("shutdown")
        for pool in pools:
            pool.stop()  # without cancel_pending, threads drain the queue first
        for pool in pools:
            pool.join(deadline)
        if not cancel_pending:
            cancelled += sum(task.cancel(reason="shutdown") for task in self.live_tasks())
        # Long jobs: cancelled above (or now), joined within the same deadline; a job
        # still running stays parked (never destroyed, never terminated).
        if not cancel_pending:
            cancelled += self.jobs.cancel_all("shutdown")
        still_jobs = self.jobs.join(deadline)
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
