"""``JobDelivery``: a long job's progress and outcome, on their way to the GUI thread.

The lower half of a job's core (``JobCore`` builds on it), as ``Delivery`` is for a
task: progress and status reported on the job thread are coalesced (latest value wins)
and emitted by the delivery engine at most once a frame, never before Qt's ``started``
reached the GUI thread; the outcome is emitted once, after the final progress.  Every
signal goes out through the job (:class:`JobFace`), and none once the owner is dead::

    job thread                                  GUI thread
    ----------                                  ----------
    ctx.progress / ctx.status
      report_progress ──► engine.mark_dirty ──► _flush_progress (at most once a frame;
                                                  held until started_arrived())
                                                  ─► job.progress / job.status
    outcome settled (JobCore)                   deliver(): final progress, then
                                                  job.result | job.error | job.cancelled

Attribute access on a PySide ``QObject`` subclass goes through Shiboken (~0.3 µs per
access against ~0.05 µs here): ``ctx.progress`` touches four attributes per call, and
the 200 000-update flood of the benchmark runs entirely against this plain object.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import shiboken6
from PySide6.QtCore import SIGNAL, SignalInstance

from .._core._failure import TaskFailure
from .._core._outcome import Outcome
from .._core._state import TaskState
from .._engine import DeliveryEngine
from .._owners import OwnerRecord
from .._report import report_callback_exception

__all__ = ("ETA_WINDOW", "JobDelivery", "JobFace")

_SUCCEEDED, _FAILED = TaskState.SUCCEEDED, TaskState.FAILED

#: Seconds of progress history the ETA is estimated from.
ETA_WINDOW = 10.0


class JobFace(Protocol):
    """The ``QThread`` side of a job, as its core sees it (``LongJob`` provides it)."""

    @property
    def progress(self) -> SignalInstance:
        """``progress(int, int)``."""

    @property
    def status(self) -> SignalInstance:
        """``status(str)``."""

    @property
    def result(self) -> SignalInstance:
        """``result(object)``."""

    @property
    def error(self) -> SignalInstance:
        """``error(object)``: a ``TaskFailure``."""

    @property
    def cancelled(self) -> SignalInstance:
        """``cancelled()``."""

    def receivers(self, signal: str, /) -> int:
        """``QObject.receivers``: how many slots are connected to ``signal``."""


class JobDelivery(Outcome[Any]):
    """A job's outcome and coalesced progress, and their delivery.  Thread-safe.

    Args:
        id: The job's number.
        name: The job's display name.
        lock: The lock of the job's state.
        face: The job whose signals are emitted (held weakly: the registry holds the
            job while it matters, and a cycle job -> core -> job would let the cyclic
            GC destroy the QThread on any thread).
        engine: The delivery engine that flushes progress and runs deliveries.
        owner_record: The owner's record, or None.
    """

    _kind = "long job"

    __slots__ = (
        "_delivered",
        "_emitted_progress",
        "_emitted_status",
        "_engine",
        "_face",
        "_flush_waiting_start",
        "_progress",
        "_progress_dirty",
        "_ran",
        "_samples",
        "_started_seen",
        "_status",
        "owner_record",
    )

    def __init__(
        self,
        id: int,
        name: str,
        lock: threading.Lock,
        face: JobFace,
        engine: DeliveryEngine,
        owner_record: OwnerRecord | None,
    ) -> None:
        super().__init__(id, name, lock)
        self.owner_record = owner_record
        self._face: weakref.ref[JobFace] = weakref.ref(face)
        self._engine = engine
        self._progress: tuple[int, int] | None = None
        self._status: str | None = None
        self._progress_dirty = False
        self._emitted_progress: tuple[int, int] | None = None
        self._emitted_status: str | None = None
        self._started_seen = False
        self._flush_waiting_start = False
        self._samples: deque[tuple[float, int]] = deque()
        self._delivered = False
        self._ran = False  # the work ran (a job cancelled before it began has no progress)

    # -- reported on the job thread ----------------------------------------------------------

    def owner_alive(self) -> bool:
        """False once the job's owner was destroyed (always True without an owner)."""
        owner = self.owner_record
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

    # -- read any time ---------------------------------------------------------------------------

    @property
    def progress_value(self) -> tuple[int, int]:
        """The latest ``(current, total)`` reported; ``(0, 0)`` before any."""
        return self._progress or (0, 0)

    @property
    def status_text(self) -> str:
        """The latest status text reported; ``""`` before any."""
        return self._status or ""

    @property
    def eta(self) -> float | None:
        """Estimated seconds until done, or None (see ``LongJob.eta``)."""
        progress = self._emitted_progress or self._progress
        if self._finished:
            return 0.0 if self._state is _SUCCEEDED else None
        if progress is None or not self._started_at:
            return None
        current, total = progress
        if total <= 0 or current <= 0:
            return None
        remaining = max(0, total - current)
        samples = self._samples
        if len(samples) >= 2:
            (t0, c0), (t1, c1) = samples[0], samples[-1]
            if t1 > t0 and c1 > c0:
                return remaining * (t1 - t0) / (c1 - c0)
        return remaining * self.elapsed / current

    def failure(self) -> TaskFailure | None:
        """The failure record of a failed job (it counts as retrieved), else None."""
        exc = self._exc
        if self._state is _FAILED and exc is not None:
            self._retrieved()
            return TaskFailure.from_exception(exc, self.id, self.name)
        return None

    def _call_done_callback(self, fn: Callable[[Any], object]) -> None:
        job = self._face()  # done callbacks receive the LongJob, not this core
        if job is not None:
            try:
                fn(job)
            except BaseException as exc:
                report_callback_exception(f"a done callback of long job {self.name!r}", exc)

    # -- GUI thread ---------------------------------------------------------------------------

    def started_arrived(self) -> bool:
        """``QThread.started`` reached the GUI thread; True if progress waits to be flushed."""
        self._started_seen = True
        waiting, self._flush_waiting_start = self._flush_waiting_start, False
        return waiting

    def flush_held_progress(self) -> None:
        """Emit the progress held back until ``started`` (after the user's started slots)."""
        self._flush_progress()

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
        job = self._face()
        if job is None or not self.owner_alive() or not shiboken6.isValid(job):
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

    def deliver(self) -> None:
        """Emit the final progress and the outcome, exactly once.  GUI thread."""
        if self._delivered or not self._finished:
            return
        self._delivered = True
        self._progress_dirty = False
        job = self._face()
        if job is None or not self.owner_alive() or not shiboken6.isValid(job):
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
                job.error.emit(TaskFailure.from_exception(self._exc, self.id, self.name))
            else:
                job.cancelled.emit()
        except BaseException as exc:
            report_callback_exception(f"a slot of long job {self.name!r}", exc)
