"""``JobThread``: the ``QThread`` machinery under ``LongJob``.

Starting the thread (parking its C++ object, the gate that holds Qt's ``finished``),
the thread's body, and the GUI-thread handlers of ``started`` and ``finished`` that
deliver the outcome and release the job.  ``LongJob`` is the public face built on it
(signals, options, what you read, cancel/pause/stop).

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

Each handler is a ``@Slot`` of this object, which lives on the GUI thread: Qt queues
``started``/``finished`` to it from the job thread.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QDeadlineTimer, QMetaObject, QObject, Qt, QThread, Slot

from .._core._call import hand_over_to_gui
from .._engine import DeliveryEngine
from .._report import report_callback_exception
from ._context import JobContext
from ._jobcore import JobCore
from ._parking import park, unpark
from ._work import JobWork

__all__ = ("JobThread",)

logger = logging.getLogger("casare_workers")

#: Milliseconds the GUI thread waits, after ``QThread.finished``, for Qt's last
#: instructions on the job thread (it is already past the user's code).
_FINISH_WAIT_MS = 5000
#: Seconds the job thread waits, at most, for the GUI thread to return to its event loop
#: after ``start()`` before it lets Qt emit ``finished`` (see :meth:`JobThread._launch`).
_END_GATE_TIMEOUT = 5.0


class JobThread(QThread):
    """The thread of a long job, and its GUI-thread bookkeeping (``LongJob``'s base).

    Args:
        engine: The delivery engine (its thread is the GUI thread).

    Subclasses set ``_core`` and ``_work`` in their ``__init__``.
    """

    _core: JobCore
    _work: JobWork | None  # dropped on the GUI thread once the job has ended

    def __init__(self, engine: DeliveryEngine) -> None:
        super().__init__()
        if not engine.is_gui_thread():
            # Slots of this object (the finished handler) must run on the GUI thread.
            self.moveToThread(engine.thread())
        self._engine = engine
        # Connected before anyone else can connect, so these run before the user's
        # slots (queued connections run in connection order).  They are @Slot methods
        # of this GUI-thread object: Qt queues them from the job thread.
        self.started.connect(self._on_thread_started)
        self.finished.connect(self._on_thread_finished)

    def _launch(self, priority: QThread.Priority) -> None:
        """Park the C++ object and start the thread (the job was claimed and registered)."""
        core = self._core
        engine = self._engine
        if engine.is_gui_thread():
            park(self, engine.thread())
            # Opened when the GUI thread is back in its event loop: connections made
            # right after start() are in place before Qt emits finished (it would be
            # emitted from the job thread, maybe before the next line of the caller).
            engine.post(core.close_end_gate().set)
        else:
            engine.post(lambda: park(self, engine.thread()) if not core.thread_done else None)
        QThread.start(self, priority)

    def join_thread(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the job's thread to end (for the package).

        Used by :meth:`stop` and by the manager's shutdown (``JobRegistry.join``).  On
        the GUI thread, a job whose thread ended is delivered before this returns.

        Returns:
            True if the thread has ended, or was never started.
        """
        core = self._core
        if not core.claimed:
            return True
        core.open_end_gate()
        ended = QThread.wait(self, QDeadlineTimer(int(timeout * 1000)))
        if ended and self._engine.is_gui_thread():
            self._on_thread_finished()
        return ended

    # -- the job thread -----------------------------------------------------------------------

    def run(self) -> None:
        """Qt's thread entry: run the work and decide the outcome.  Job thread.

        Never override (``work`` is the hook); no exception escapes into Qt.
        """
        core = self._core
        try:
            if core.begin():
                work = self._work
                assert work is not None
                try:
                    value = work.invoke(JobContext(core), core)
                    if isinstance(value, QObject):  # made here: it must not keep this thread
                        hand_over_to_gui(value, self._engine.thread(), f"long job {core.name!r}")
                except BaseException as exc:
                    core.conclude(None, exc)
                else:
                    core.conclude(value, None)
        except BaseException as exc:  # a bug of ours: never let it into Qt's thread
            report_callback_exception(f"long job {core.name!r}", exc)
            core.fail(exc)
        # Qt emits finished once this returns.  Hold it until the GUI thread is back in
        # its event loop after start(), so that a slot connected to finished right after
        # start() cannot miss it.  Bounded: a GUI thread that never returns there (and
        # never waits for the job, which opens the gate) cannot hold it.
        core.wait_end_gate(_END_GATE_TIMEOUT)
        # The function and its arguments are dropped on the GUI thread (in the finished
        # handler), so QObjects among them are never destroyed on this thread.

    # -- GUI thread ---------------------------------------------------------------------------

    def _before_outcome(self) -> None:
        """Hook for subclasses: deliver what must precede the outcome.  GUI thread."""

    @Slot()
    def _on_thread_started(self) -> None:
        """QThread.started reached the GUI thread (runs before the user's slots)."""
        if self._core.started_arrived():
            # Queued, so it runs after the user's started slots (already queued).
            QMetaObject.invokeMethod(
                self, "_flush_after_start", Qt.ConnectionType.QueuedConnection
            )

    @Slot()
    def _flush_after_start(self) -> None:
        self._core.flush_held_progress()

    @Slot()
    def _on_thread_finished(self) -> None:
        """The thread ended: deliver the outcome, unpark, release.  GUI thread, idempotent.

        Runs before the user's ``finished`` slots (connected first), so they see the
        outcome signals already emitted.
        """
        core = self._core
        if core.thread_done:
            return
        core.open_end_gate()
        # Qt emits finished from the job thread a few instructions before the thread
        # ends; wait for those (the user's code is over: this returns at once).
        if not QThread.wait(self, QDeadlineTimer(_FINISH_WAIT_MS)):
            logger.error("long job %r: thread did not end after finished", core.name)
            return
        core.thread_ended()
        unpark(self)
        try:
            self._before_outcome()
        except BaseException as exc:
            report_callback_exception(f"long job {core.name!r}", exc)
        core.deliver()
        self._work = None
        core.after_delivery()
