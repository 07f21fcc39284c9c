"""``WorkerManager``: the QObject that owns the named pools and that widgets connect to.

The manager's face: its signals, its parent, its place in the application.  Every
method hands over to the plain ``ManagerCore`` (``manager_core(manager)``), which calls
back through the ``ManagerFace`` protocol (the signals) and a weak reference to the
statistics timer's start::

    WorkerManager ──(holds)──► ManagerCore ──(weakly)──► WorkerManager's signals
      connectNotify ─► core.wants_started / wants_submitted / wants_finished
      destroyed (direct) ─► abandon(core)            (_lifecycle)
      QApplication destroyed, interpreter exit ─► core.shutdown(...)
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar, overload

from PySide6.QtCore import (
    QCoreApplication,
    QMetaMethod,
    QObject,
    QTimer,
    Signal,
)

from .._config import PoolConfig, resolve_pool_configs
from .._core._handle import TaskHandle
from .._engine import DeliveryEngine, get_engine
from .._pools._map import MapHandle
from .._validation import check_seconds
from .._worker import Worker
from ._core import ManagerCore
from ._lifecycle import DefaultSlot, Stoppable, abandon, register_final_shutdown
from ._options import KeyPolicy, TaskOptions
from ._stats import STATISTICS_INTERVAL_MS, ManagerStatistics, ShutdownReport

__all__ = ("DEFAULT_MANAGER", "WorkerManager", "manager_core")

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


class WorkerManager(QObject):
    """Owns named, bounded pools; runs work off the GUI thread; delivers results on it.

    Create it on the GUI thread after the ``QApplication``.  All methods are thread-safe
    unless noted; signals are emitted on the GUI thread.

    Args:
        parent: Optional QObject parent.
        pools: Pool name to size (or :class:`PoolConfig`); overrides the defaults
            ``io``/``cpu``/``background`` and may add pools.  See ``_config``.
        shutdown_timeout: Seconds :meth:`shutdown` waits by default, and when it runs
            by itself (the application destroyed, interpreter exit).
        default: Become the application's default manager (:func:`default_manager`,
            used by ``LongJob``, ``SubprocessJob``, ``asyncify``, ``TaskGroup`` without
            ``manager=``) if there is no open one yet.  False for a second, independent
            manager (a library's, a test's) that must never receive others' work.

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
        default: bool = True,
    ) -> None:
        engine = get_engine()
        if not engine.is_gui_thread():
            raise RuntimeError(
                "create the WorkerManager on the GUI thread (the QApplication's thread); "
                "worker threads can then use it freely"
            )
        configs = resolve_pool_configs(pools)
        check_seconds("shutdown_timeout", shutdown_timeout, allow_zero=True)
        super().__init__(parent)
        self._core = core = ManagerCore(
            self,
            engine,
            configs,
            float(shutdown_timeout),
            weakref.WeakMethod(self._start_statistics),
        )
        # Through the meta-object, not QMetaMethod.fromSignal(self.x): in PySide6 6.11
        # and 6.12 each fromSignal call leaks a reference to the signal's object, which
        # would keep every manager alive for ever.
        meta = self.metaObject()
        self._meta_started = meta.method(meta.indexOfSignal("task_started(PyObject)"))
        self._meta_submitted = meta.method(meta.indexOfSignal("task_submitted(PyObject)"))
        self._meta_finished = meta.method(meta.indexOfSignal("task_finished(PyObject)"))
        self._last_statistics: ManagerStatistics | None = None
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(STATISTICS_INTERVAL_MS)
        self._stats_timer.timeout.connect(self._publish_statistics)
        app = QCoreApplication.instance()
        assert app is not None
        register_final_shutdown(core, app)
        # Direct: the manager may be destroyed on another thread (the cyclic GC), where
        # a queued call would be discarded with the object (see _owners).
        from PySide6.QtCore import Qt  # on use: see casare_workers._signals

        core_ref: weakref.ref[Stoppable] = weakref.ref(core)
        self.destroyed.connect(
            functools.partial(abandon, core_ref), Qt.ConnectionType.DirectConnection
        )
        if default:
            DEFAULT_MANAGER.adopt(self)

    def connectNotify(self, signal: QMetaMethod) -> None:
        """Remember which lifecycle signals have listeners (GUI thread)."""
        core = self._core
        if signal == self._meta_started:
            core.wants_started = True
        elif signal == self._meta_submitted:
            core.wants_submitted = True
        elif signal == self._meta_finished:
            core.wants_finished = True

    # -- configuration ---------------------------------------------------------------------

    @property
    def pool_names(self) -> tuple[str, ...]:
        """The names of this manager's pools."""
        return tuple(self._core.pools)

    @property
    def engine(self) -> DeliveryEngine:
        """The delivery engine this manager delivers through."""
        return self._core.engine

    @property
    def shutdown_timeout(self) -> float:
        """Seconds :meth:`shutdown` waits by default (and when it runs by itself)."""
        return self._core.shutdown_timeout

    def options(
        self,
        *,
        pool: str = "io",
        priority: int = 0,
        owner: QObject | None = None,
        key: Hashable | None = None,
        timeout: float | None = None,
        name: str | None = None,
        key_policy: KeyPolicy = "supersede",
    ) -> TaskOptions:
        """Return a :class:`TaskOptions` to submit with.  Validates everything now.

        Args:
            pool: Pool name (default ``"io"``).
            priority: Higher runs first within the pool.
            owner: A QObject; when it is destroyed, or (a widget) its window is
                closed, its tasks are cancelled; once it is destroyed nothing is
                delivered to it.
            key: Tasks with the same key (per owner) are one request; see
                ``key_policy``.
            timeout: Seconds a task may run before it ends with ``TaskTimeoutError``.
            name: A display name for the task.
            key_policy: ``"supersede"`` (default): a new task cancels the one in
                flight with its key.  ``"join"`` (single flight): ``submit`` returns
                the handle in flight instead of running a second identical request.

        Raises:
            UnknownPoolError: No pool has that name.
            ConfigurationError: ``priority`` is not an int, ``timeout`` is not a
                positive number, or ``key_policy`` is unknown or has no ``key``.
            TypeError: ``owner`` is not a QObject, or ``key`` is not hashable.

        Example:
            >>> opts = manager.options(pool="cpu", owner=self, key="thumbs")  # doctest: +SKIP
            >>> opts.map(make_thumbnail, paths)                           # doctest: +SKIP
        """
        return self._core.options(pool, priority, owner, key, timeout, name, key_policy)

    # -- submitting --------------------------------------------------------------------

    @overload
    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]: ...
    # Reached when the arguments do not fit P: a function that declares ctx.
    @overload
    def submit(  # type: ignore[overload-cannot-match]
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> TaskHandle[T]: ...
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        """Run ``fn(*args, **kwargs)`` on the ``"io"`` pool; return its :class:`TaskHandle`.

        Typed with ``ParamSpec``: the arguments are checked against ``fn`` and the handle
        carries ``fn``'s return type.  A function that declares ``ctx`` (which the
        manager passes) falls back to an unchecked form, since a type checker cannot
        drop one named parameter from a signature.

        Use :meth:`options` for another pool, a priority, an owner, a key or a timeout.
        If ``fn`` declares a ``ctx`` parameter it receives a :class:`TaskContext`.

        Raises:
            TypeError: ``fn`` is not callable, or you passed ``ctx`` yourself.
            ManagerShutdownError: After :meth:`shutdown`.

        Example:
            >>> handle = manager.submit(read_file, path)       # doctest: +SKIP
            >>> handle.signals.result.connect(self.show_text)  # doctest: +SKIP
        """
        core = self._core
        return core.submit(fn, args, kwargs, core.default_options)

    def map(
        self, fn: Callable[[Any], R], iterable: Iterable[Any], /, *, chunksize: int | None = None
    ) -> MapHandle[R]:
        """Apply ``fn`` to every item on the ``"io"`` pool; one handle, results in order.

        Sub-millisecond items are grouped into chunks automatically (or pass
        ``chunksize``).  ``progress`` reports ``(items done, total)``.  The iterable is
        consumed at once (its length is the progress total).

        Example:
            >>> handle = manager.options(pool="cpu").map(thumbnail, paths)  # doctest: +SKIP
            >>> handle.signals.progress.connect(to_percent(bar.setValue))  # doctest: +SKIP
        """
        core = self._core
        return core.map(fn, iterable, chunksize, core.default_options)

    def start(self, worker: Worker[T]) -> TaskHandle[T]:
        """Run a :class:`Worker` on the ``"io"`` pool; its ``signals`` fire on the GUI thread.

        Raises:
            AlreadyStartedError: The worker was started before.
        """
        core = self._core
        return core.start(worker, core.default_options)

    # -- observing ----------------------------------------------------------------------

    def live_tasks(self) -> list[TaskHandle[Any]]:
        """Tasks submitted and not yet delivered (a snapshot, oldest first)."""
        return self._core.live_tasks()

    def is_idle(self) -> bool:
        """True when every task and long job has been delivered to the GUI thread."""
        core = self._core
        return not core.live and not core.jobs.live

    def wait_for_done(self, timeout: float) -> bool:
        """Process events on the GUI thread until :meth:`is_idle` or ``timeout`` passes.

        For tests and scripts; GUI code should react to signals instead.

        Returns:
            True if the manager became idle.

        Raises:
            ConfigurationError: ``timeout`` is not a non-negative number of seconds.
        """
        check_seconds("wait_for_done() timeout", timeout, allow_zero=True)
        return self._core.wait_idle(time.monotonic() + timeout)

    def statistics(self) -> ManagerStatistics:
        """Return a frozen snapshot of every pool's counters."""
        return self._core.statistics()

    def _start_statistics(self) -> None:
        if not self._stats_timer.isActive():
            self._stats_timer.start()

    def _publish_statistics(self) -> None:
        stats = self._core.statistics()
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
        return self._core.engine.call_in_gui_thread(fn, *args, **kwargs)

    def watch_tasks(self) -> deque[Any]:
        """Return a deque that receives every task (and long job) started from now on.

        For views that refresh in batches (``TaskTableModel``): appending costs the
        submitter ~0.05 µs, and no signal is emitted per task.  Call
        :meth:`unwatch_tasks` when done.
        """
        watcher: deque[Any] = deque()
        self._core.watchers.append(watcher)
        return watcher

    def unwatch_tasks(self, watcher: deque[Any]) -> None:
        """Stop feeding a deque returned by :meth:`watch_tasks`."""
        watchers = self._core.watchers
        if watcher in watchers:
            watchers.remove(watcher)

    def threads(self) -> list[threading.Thread]:
        """Every live worker thread of every pool (for leak checks in tests)."""
        return [thread for pool in self._core.pools.values() for thread in pool.threads()]

    # -- cancelling and shutting down -----------------------------------------------------

    def cancel_all(self) -> int:
        """Cancel every live task and long job.  Returns how many this call cancelled."""
        core = self._core
        return sum(task.cancel() for task in core.live_tasks()) + core.jobs.cancel_all("cancelled")

    # -- long jobs ----------------------------------------------------------------------

    def live_jobs(self) -> list[Any]:
        """Long jobs (``LongJob``) started and not yet delivered (a snapshot, oldest first)."""
        return self._core.jobs.live_jobs()

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
        the process's exit.  Idempotent: later calls return the first report.

        Called automatically, with :attr:`shutdown_timeout`, when the ``QApplication``
        is destroyed and at interpreter exit (before ``concurrent.futures`` and
        ``threading`` join their threads) — but *not* at ``aboutToQuit``: that signal
        comes every time the event loop returns (each qasync ``run_until_complete``), and
        an application's own ``aboutToQuit`` handlers may still submit and wait for
        cleanup work.  See the guide's "Quitting".
        """
        report = self._core.shutdown(timeout, cancel_pending)
        self._stats_timer.stop()
        return report

    def __enter__(self) -> WorkerManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        core = self._core
        state = "shut down" if core.closed else ("busy" if core.busy else "idle")
        return f"<WorkerManager pools={list(core.pools)} {state}>"


def manager_core(manager: WorkerManager) -> ManagerCore:
    """The plain object behind ``manager`` (long jobs and the bridge use it as their host)."""
    return manager._core


#: The process-wide default manager (``default_manager()``).
DEFAULT_MANAGER: DefaultSlot[WorkerManager] = DefaultSlot(lambda manager: manager._core.closed)
