"""The delivery engine: moves results, errors and progress to the GUI thread in batches.

Data flow::

     worker thread(s)                          GUI thread
     ----------------                          ----------
     settle(task) ──► deque.append(callback) ──► one posted _WAKE event per batch
                        (lock-free, ~0.05 µs)        │
                                                    ▼
                                        _drain(): run callbacks until the deque is
                                        empty or the time budget (5 ms) is spent;
                                        if work is left, post another _WAKE so that
                                        paint, input and timers run in between.

     ctx.progress(c, t) ──► task._progress = (c, t)       (latest value wins)
                            first time dirty: _dirty.append(task) + wake
                                                    ▼
                                        _flush_progress(): at most once per frame
                                        (16 ms), one emit per dirty task.

A wake-up is posted only when the flag ``_wake_pending`` is clear, so a burst of 20 000
results costs a handful of posted events, not 20 000 queued signals.  The flag is cleared
*before* the deque is read, so an item appended while the GUI thread drains either is
seen by this drain or posts its own wake-up: nothing is stranded.

No single Qt event carries the guarantee.  A posted event or a timer shot that never
arrives (an event filter that eats it, a receiver's posted events removed, a binding
defect) would leave ``_wake_pending`` set and the queue stranded for ever.  So a second,
independent path watches: the *rescuer*, a daemon thread that sleeps while nothing is
queued and, while something is, looks every :data:`RESCUE_INTERVAL`.  If the queue was
non-empty for a whole interval and no drain started (or progress waited that long with
no flush), it asks the GUI thread to drain through a different Qt mechanism (a queued
call of a slot, ``QMetaObject.invokeMethod``), backing off to once a second while the
GUI thread stays busy.  ``rescues`` counts how often it had to::

     worker ─ post_item ─┬─► posted _WAKE ───────────────► _Receiver.event ─► _drain
                         └─► wakes the rescuer (if asleep: once per burst)
     rescuer: queue non-empty and no drain for an interval
                         └─► invokeMethod("rescue") ─────► _Receiver.rescue ─► _drain
                                                            (+ overdue progress)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import shiboken6
from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QMetaObject,
    QObject,
    QThread,
    QTimer,
    Slot,
)

from ._errors import NoApplicationError
from ._report import report_callback_exception
from ._selfcheck import check_none_leak

__all__ = ("DeliveryEngine", "get_engine")

logger = logging.getLogger("casare_workers")

T = TypeVar("T")

#: Seconds between two progress deliveries (one frame at 60 Hz).
FRAME_INTERVAL = 0.016
#: Seconds the GUI thread spends draining before it yields back to the event loop.
DRAIN_BUDGET = 0.005
#: Seconds queued work may wait with no drain before the rescuer asks again.
RESCUE_INTERVAL = 0.05
#: The longest the rescuer waits between two asks while the GUI thread stays busy.
RESCUE_BACKOFF_MAX = 1.0
#: Seconds with nothing queued after which the rescuer sleeps until the next post.
RESCUE_IDLE = 1.0

_WAKE = QEvent.Type(QEvent.registerEventType())


class ProgressSource(Protocol):
    """Anything whose coalesced progress the engine flushes (tasks, long jobs)."""

    def _flush_progress(self) -> None: ...


class Deliverable(Protocol):
    """Anything the engine delivers: a task (its outcome) or a wrapped callable."""

    def _deliver(self) -> None: ...


class _Call:
    """A callable queued with :meth:`DeliveryEngine.post`."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn

    def _deliver(self) -> None:
        self.fn()


class _Receiver(QObject):
    """The engine's foothold in Qt: receives the wake-up events on the GUI thread.

    Kept separate from :class:`DeliveryEngine` because calling methods of a PySide
    ``QObject`` subclass costs ~0.3 µs against ~0.05 µs on a plain object, and the engine
    is called for every task.
    """

    def __init__(self, engine: DeliveryEngine) -> None:
        super().__init__()
        self._engine = engine
        self.frame = QTimer(self)
        self.frame.setSingleShot(True)
        from PySide6.QtCore import Qt  # on use: see casare_workers._signals

        self.frame.setTimerType(Qt.TimerType.PreciseTimer)
        self.frame.timeout.connect(engine._flush_progress)

    def event(self, event: QEvent) -> bool:
        """Handle the engine's wake-up events.  Runs on the GUI thread."""
        if event.type() == _WAKE:
            engine = self._engine
            engine._drain(engine._budget)
            return True
        return super().event(event)

    @Slot()
    def rescue(self) -> None:
        """The rescuer's second path to a drain (a queued slot call).  GUI thread."""
        self._engine._rescue()


class DeliveryEngine:
    """Process-wide GUI-thread delivery queue; one per ``QCoreApplication``.

    Thread-safe entry points: :meth:`post`, :meth:`mark_dirty`, :meth:`call_in_gui_thread`,
    :meth:`is_gui_thread`.  Everything else runs on the GUI thread.
    """

    def __init__(self, app: QCoreApplication) -> None:
        self._app = app
        self._queue: deque[Deliverable] = deque()
        self._dirty: deque[ProgressSource] = deque()
        self._wake_pending = False
        self._progress_pending = False
        self._last_flush = 0.0
        self._budget = DRAIN_BUDGET
        self._gui_ident = threading.get_ident()
        self._receiver = _Receiver(self)
        from PySide6.QtCore import Qt  # on use: see casare_workers._signals

        # Read once here: the rescuer thread posts with it.
        self._queued = Qt.ConnectionType.QueuedConnection
        self._progress_item = _Call(self._schedule_progress)
        self._rescuer: threading.Thread | None = None
        self._rescuer_lock = threading.Lock()
        self._work_posted = threading.Event()
        self._rescuer_idle = True
        self._retired = False
        #: Number of drains and of items delivered (for tests and the benchmarks).
        self.drains = 0
        self.delivered = 0
        self.progress_flushes = 0
        #: Times the rescuer found work stranded (a lost wake-up) and drained it.
        self.rescues = 0

    # -- any thread ---------------------------------------------------------------

    def is_gui_thread(self) -> bool:
        """Return True when called on the GUI thread (the engine's thread)."""
        return threading.get_ident() == self._gui_ident

    def thread(self) -> QThread:
        """The GUI thread, as a QThread (to move QObjects there)."""
        return self._receiver.thread()

    def receiver(self) -> QObject:
        """A QObject living on the GUI thread (a context for timers and queued calls)."""
        return self._receiver

    def is_valid(self) -> bool:
        """False once the Qt side of the engine was destroyed (application gone)."""
        return shiboken6.isValid(self._receiver)

    def post(self, callback: Callable[[], object]) -> None:
        """Queue ``callback`` to run on the GUI thread in the next drain (any thread)."""
        self.post_item(_Call(callback))

    def post_item(self, item: Deliverable) -> None:
        """Queue ``item._deliver()`` for the next drain (any thread; no allocation)."""
        self._queue.append(item)
        if not self._wake_pending:
            self._wake_pending = True
            self._post_wake()

    def mark_dirty(self, source: ProgressSource) -> None:
        """Note that ``source`` has new progress to flush within a frame (any thread)."""
        self._dirty.append(source)
        if not self._progress_pending:
            self._progress_pending = True
            self.post_item(self._progress_item)

    def call_in_gui_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on the GUI thread; return a Future of its result.

        Callable from any thread: QThreads, ``concurrent.futures`` threads, plain
        ``threading.Thread`` s.  Called on the GUI thread itself it runs ``fn`` at once
        (so a caller blocking on the Future cannot deadlock).
        """
        future: Future[T] = Future()
        if self.is_gui_thread():
            _run_into(future, fn, args, kwargs)
        else:
            self.post(lambda: _run_into(future, fn, args, kwargs))
        return future

    def _post_wake(self) -> None:
        try:
            QCoreApplication.postEvent(self._receiver, QEvent(_WAKE))
        except RuntimeError:  # the receiver is gone (application destroyed)
            logger.debug("delivery engine gone; dropping wake-up")
            return
        if self._rescuer_idle:  # cheap: the rescuer is woken once per burst (see _watch)
            self._rescuer_idle = False
            if self._rescuer is None:
                self._start_rescuer()
            self._work_posted.set()

    # -- the rescuer thread ------------------------------------------------------------

    def _start_rescuer(self) -> None:
        with self._rescuer_lock:
            if self._rescuer is not None:
                return
            rescuer = threading.Thread(
                target=self._watch, name="casare-engine-rescuer", daemon=True
            )
            self._rescuer = rescuer
            try:
                rescuer.start()
            except RuntimeError:  # interpreter exit (no new threads): nothing to watch
                logger.debug("delivery engine: no rescuer thread at interpreter exit")

    def _stranded(self, drains: int, flushes: int) -> bool:
        """True if work waited a whole interval with no drain (or progress no flush)."""
        if self._queue and self.drains == drains:
            return True
        return bool(self._dirty) and self.progress_flushes == flushes and not self._queue

    def _watch(self) -> None:
        """The rescuer: notices queued work that no drain picks up.  Its own thread.

        Once woken it stays awake, looking every interval, until nothing was queued for
        :data:`RESCUE_IDLE`; only then do posters wake it again (an ``Event.set`` per
        burst, not per batch: a third thread woken on every round trip would compete for
        the GIL with the GUI thread and the worker).
        """
        posted = self._work_posted
        while not self._retired and self.is_valid():
            posted.wait()
            posted.clear()
            interval = RESCUE_INTERVAL
            quiet = 0.0
            while True:
                drains, flushes = self.drains, self.progress_flushes
                posted.wait(interval)  # a sleep that retiring can cut short
                posted.clear()
                if self._retired or not self.is_valid():
                    return
                if not (self._queue or self._dirty):
                    quiet += interval
                    interval = RESCUE_INTERVAL
                    if quiet < RESCUE_IDLE:
                        continue
                    self._rescuer_idle = True
                    if self._queue or self._dirty:  # a post raced with going idle
                        self._rescuer_idle = False
                        continue
                    break
                quiet = 0.0
                if not self._stranded(drains, flushes):
                    interval = RESCUE_INTERVAL
                    continue
                try:
                    QMetaObject.invokeMethod(self._receiver, "rescue", self._queued)
                except RuntimeError:  # the application is gone
                    return
                interval = min(interval * 2, RESCUE_BACKOFF_MAX)

    # -- GUI thread -----------------------------------------------------------------

    def _drain(self, budget: float | None) -> None:
        # Clear the flag first: see the module docstring for why this order is safe.
        self._wake_pending = False
        self.drains += 1
        queue = self._queue
        popleft = queue.popleft
        clock = time.perf_counter
        deadline = clock() + budget if budget is not None else None
        count = 0
        try:
            while queue:
                item = popleft()
                try:
                    item._deliver()
                except BaseException as exc:  # a faulty callback never stops the engine
                    report_callback_exception("a delivery callback", exc)
                count += 1
                if deadline is not None and not count & 31 and clock() > deadline:
                    break
        finally:
            self.delivered += count
            if queue and not self._wake_pending:
                self._wake_pending = True
                self._post_wake()

    def _rescue(self) -> None:
        """Drain what the usual wake-up did not, and flush overdue progress."""
        self.rescues += 1
        logger.debug("delivery engine: a wake-up was lost or late; rescuing %r", self)
        self._drain(self._budget)
        if self._dirty and time.perf_counter() - self._last_flush > 2 * FRAME_INTERVAL:
            # The frame timer did not fire (or its shot was lost): flush now.
            self._receiver.frame.stop()
            self._flush_progress()

    def _schedule_progress(self) -> None:
        self._progress_pending = False
        frame = self._receiver.frame
        if frame.isActive():
            return
        wait = self._last_flush + FRAME_INTERVAL - time.perf_counter()
        if wait <= 0:
            self._flush_progress()
        else:
            frame.start(max(1, round(wait * 1000)))

    def _flush_progress(self) -> None:
        self._last_flush = time.perf_counter()
        self.progress_flushes += 1
        dirty = self._dirty
        for _ in range(len(dirty)):
            source = dirty.popleft()
            try:
                source._flush_progress()
            except BaseException as exc:
                report_callback_exception("a progress slot", exc)

    def flush(self) -> None:
        """Deliver everything queued now, with no time budget.  GUI thread only.

        For shutdown and deterministic tests; progress that is waiting for its frame is
        delivered too.
        """
        self._progress_pending = False
        for _ in range(1000):
            if not self._queue and not self._dirty:
                break
            self._drain(None)
            if self._dirty:
                self._receiver.frame.stop()
                self._flush_progress()

    def _retire(self) -> None:
        """This engine's application is gone: let the rescuer thread end."""
        self._retired = True
        self._work_posted.set()

    def __repr__(self) -> str:
        return (
            f"<DeliveryEngine queued={len(self._queue)} drains={self.drains} "
            f"rescues={self.rescues}>"
        )


def _run_into(
    future: Future[T], fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


_engine: DeliveryEngine | None = None
_engine_lock = threading.Lock()


def get_engine() -> DeliveryEngine:
    """Return the delivery engine of the running ``QCoreApplication``, creating it once.

    Raises:
        NoApplicationError: No QCoreApplication/QApplication exists yet.
    """
    global _engine
    engine = _engine
    app = QCoreApplication.instance()
    if engine is not None and app is engine._app and engine.is_valid():
        return engine
    if app is None:
        raise NoApplicationError(
            "casare_workers delivers results on the GUI thread and needs a "
            "QApplication (or QCoreApplication): create it before the WorkerManager "
            "or the first Worker, e.g. app = QApplication(sys.argv)"
        )
    with _engine_lock:
        engine = _engine
        if engine is not None and app is engine._app and engine.is_valid():
            return engine
        check_none_leak()
        if _engine is not None:
            _engine._retire()
        engine = DeliveryEngine(app)
        if QThread.currentThread() is not app.thread():
            # Created off the GUI thread (a Worker started from a pool thread): hand it
            # to the GUI thread; its identity is learned on the first drain there.
            engine._gui_ident = -1
            engine._receiver.moveToThread(app.thread())
            engine.post(lambda: setattr(engine, "_gui_ident", threading.get_ident()))
        _engine = engine
        return engine
