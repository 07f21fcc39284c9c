"""``JobCore``: one long job's state machine, kept out of its ``QThread``.

The shared :class:`~casare_workers._core._outcome.Outcome` (the same single settle as a
task's) with what a job adds: the start claim, cancellation that reaches the thread and
the job's own asyncio task, pause, the point of no return, and the gate that holds Qt's
``finished`` until the GUI thread can receive it.  Progress and delivery are its lower
half, :class:`~casare_workers._jobs._delivery.JobDelivery`.  It is the ``ContextSource``
the job's ``ctx`` reads, and what an owner's death or a closed window cancels::

    GUI thread                   job thread                      GUI thread
    start(): claim ──────────►   begin() ─ work ─ conclude()
                                   └─► Outcome._settle: future, done callbacks,
                                       registry.count_settled
                                 wait_end_gate() ────────────►   QThread.finished:
                                                                 thread_ended, deliver,
                                                                 after_delivery:
                                                                 registry.release

The methods without a leading underscore are the job package's interface to the core
(``LongJob``, ``JobContext``, ``JobRegistry``); they are not public API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import time
import types
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

from PySide6.QtCore import QThread

from .._core._state import TaskState
from .._engine import DeliveryEngine
from .._errors import AlreadyStartedError, BlockingCallError
from .._owners import OwnerRecord
from ._delivery import JobDelivery, JobFace

__all__ = ("JobBook", "JobCore")

_PENDING, _RUNNING = TaskState.PENDING, TaskState.RUNNING
_SUCCEEDED, _FAILED, _CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED

_ids = itertools.count(1)


class JobBook(Protocol):
    """What a core tells the registry that tracks its job (``JobRegistry``)."""

    def count_settled(self, state: TaskState) -> None:
        """The job's outcome was decided (any thread)."""

    def release(self, core: JobCore) -> None:
        """The job was delivered and its thread has ended: forget it (GUI thread)."""


class JobCore(JobDelivery):
    """One job's state machine, kept out of the QThread.  Thread-safe.

    Args:
        face: The job whose signals this core emits (held weakly).
        thread: The same job, as the ``QThread`` to interrupt on cancel (held weakly).
        engine: The delivery engine that flushes progress and runs deliveries.
        name: The job's display name.
        key: The supersede key, or None.
        owner_record: The owner's record, or None.
        interrupt_async: True: ``cancel()`` cancels the async work's asyncio task.
    """

    __slots__ = (
        "_async_task",
        "_claimed",
        "_committed",
        "_end_gate",
        "_exc_frames",
        "_interrupt_async",
        "_loop",
        "_pause_cv",
        "_paused",
        "_resume_waiters",
        "_thread",
        "_thread_done",
        "key",
        "registry",
    )

    def __init__(
        self,
        face: JobFace,
        thread: QThread,
        engine: DeliveryEngine,
        name: str,
        *,
        key: Hashable | None = None,
        owner_record: OwnerRecord | None = None,
        interrupt_async: bool = True,
    ) -> None:
        super().__init__(next(_ids), name, threading.Lock(), face, engine, owner_record)
        self.key = key
        #: The registry tracking the job from ``start()`` (set by it), else None.
        self.registry: JobBook | None = None
        # Weak, like the face (the same object): see JobDelivery.
        self._thread: weakref.ref[QThread] = weakref.ref(thread)
        self._interrupt_async = interrupt_async
        self._claimed = False
        self._pause_cv = threading.Condition(threading.Lock())
        self._paused = False
        self._resume_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread_done = False
        self._exc_frames: tuple[types.FrameType, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_task: asyncio.Task[Any] | None = None
        self._committed = False
        # Held shut by the job thread before it lets Qt emit finished; see LongJob.start.
        self._end_gate: threading.Event | None = None

    # -- what the job's ctx reads (ContextSource) ----------------------------------------------

    @property
    def stop_requested(self) -> bool:
        """True once the job was cancelled or its owner died."""
        return self._cancel_requested or not self.owner_alive()

    def cancel_event(self) -> threading.Event:
        """The event ``ctx.wait()`` sleeps on."""
        return self._cancel_event()

    # -- reading (any thread) -------------------------------------------------------------------

    @property
    def claimed(self) -> bool:
        """True once ``start()`` claimed the job (its thread was, or is being, started)."""
        return self._claimed

    @property
    def paused(self) -> bool:
        """True while the job is asked to pause."""
        return self._paused

    def result(self, timeout: float | None) -> Any:
        """The work's value, or raise its exception (``TaskCancelledError`` if cancelled)."""
        return self._outcome(timeout)

    def exception(self, timeout: float | None) -> BaseException | None:
        """The work's exception, None if it succeeded (``TaskCancelledError`` if cancelled)."""
        return self._exception(timeout)

    def _check_blocking(self, timeout: float | None) -> None:
        if timeout is None and self._engine.is_gui_thread():
            raise BlockingCallError(
                f"waiting for long job {self.name!r} on the GUI thread with no timeout "
                "would freeze the window: connect to job.result / job.error, or await "
                "its future from a coroutine"
            )

    # -- starting (any thread) ------------------------------------------------------------------

    def claim(self) -> None:
        """Mark the job started: RUNNING from here on (``LongJob.start``).

        From here a ``cancel()`` goes through the thread (``run()`` sees the request and
        ends at once), never through the not-started path.

        Raises:
            AlreadyStartedError: The job was started before, or cancelled before starting.
        """
        with self._lock:
            if self._claimed or self._state is not _PENDING:
                what = (
                    "cancelled before it started"
                    if self._state is _CANCELLED
                    else f"already started ({self._state.value})"
                )
                raise AlreadyStartedError(
                    f"long job {self.name!r} was {what}; a LongJob runs once: create a new "
                    "one (with the same key= to replace a running one)"
                )
            self._claimed = True
            self._state = _RUNNING

    def unclaim(self) -> None:
        """Undo :meth:`claim` (the start was refused before the thread started)."""
        with self._lock:
            self._claimed = False
            self._state = _PENDING

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
                self._engine.post(self.deliver)
            return True
        thread = self._thread()
        if thread is not None:
            try:
                # QThread's own method: LongJob.requestInterruption is cancel() itself.
                QThread.requestInterruption(thread)  # thread-safe in Qt
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
        """Pause or resume; True if that changed anything."""
        with self._pause_cv:
            if self._paused is paused or (paused and self._finished):
                return False
            self._paused = paused
        if not paused:
            self._wake_paused()
        return True

    # -- the job thread -----------------------------------------------------------------------

    def begin(self) -> bool:
        """The thread entered ``run()``; False if the job was cancelled before that."""
        self._started_at = time.perf_counter()
        if self.stop_requested:
            self._settle(_CANCELLED, None, None)
            return False
        self._ran = True
        return True

    def conclude(self, value: Any, exc: BaseException | None) -> None:
        """Turn the work's return value or exception into the one outcome."""
        stop_asked = self.stop_requested
        if exc is None:
            # A result produced after a cancel request is stale by definition.
            state = _CANCELLED if stop_asked else _SUCCEEDED
        elif stop_asked and isinstance(
            exc, asyncio.CancelledError | concurrent.futures.CancelledError
        ):
            state = _CANCELLED
        else:
            state = _FAILED  # a real failure, even during cancellation (e.g. a rollback)
        self._settle(
            state, value if state is _SUCCEEDED else None, exc if state is _FAILED else None
        )

    def fail(self, exc: BaseException) -> None:
        """End the job failed with ``exc`` (a bug of the library's, not the work's)."""
        self._settle(_FAILED, None, exc)

    def wait_while_paused(self) -> None:
        """Block while the job is paused and not stopped (``ctx.checkpoint``)."""
        if self._paused and not self.stop_requested:
            with self._pause_cv:
                while self._paused and not self.stop_requested:
                    self._pause_cv.wait()

    def resumed(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """A future on ``loop`` resolved by resume or cancel; None if not paused now."""
        with self._pause_cv:
            if not self._paused or self.stop_requested:
                return None
            fut: asyncio.Future[None] = loop.create_future()
            self._resume_waiters.append((loop, fut))
            return fut

    def commit(self) -> bool:
        """Make the job uncancellable (``ctx.point_of_no_return``); False if stopped first."""
        with self._lock:
            if self.stop_requested:
                return False
            self._committed = True
            return True

    def run_async(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run the async work on a loop created for this job, closed when it ends."""

        async def main() -> Any:
            task = asyncio.current_task()
            with self._lock:
                self._loop = asyncio.get_running_loop()
                self._async_task = task
                cancel_now = self._cancel_requested and self._interrupt_async
            try:
                if cancel_now:
                    raise asyncio.CancelledError
                return await make()
            finally:
                with self._lock:
                    self._async_task = None

        try:
            # asyncio.Runner does what asyncio.run does (cancel leftover tasks, shut
            # down async generators and the default executor, close the loop) while
            # letting cancel() reach the loop and the task.
            with asyncio.Runner() as runner:
                return runner.run(main())
        finally:
            with self._lock:
                self._loop = None

    # -- the gate Qt's finished waits behind (see LongJob.start) --------------------------------

    def close_end_gate(self) -> threading.Event:
        """Make the job thread wait, before Qt emits ``finished``, until the gate opens."""
        gate = self._end_gate = threading.Event()
        return gate

    def open_end_gate(self) -> None:
        """Let the job thread end now (before a blocking wait for it).  Any thread."""
        gate = self._end_gate
        if gate is not None:
            gate.set()

    def wait_end_gate(self, timeout: float) -> None:
        """Job thread, last: wait up to ``timeout`` seconds for the gate (if closed)."""
        gate = self._end_gate
        if gate is not None:
            gate.wait(timeout)

    # -- the one terminal transition (Outcome's hooks) ---------------------------------------

    def _settle(
        self,
        state: TaskState,
        value: Any,
        exc: BaseException | None,
        reason: str = "cancelled",
        *,
        stop: bool = False,
    ) -> bool:
        if state is _CANCELLED and not self.owner_alive():
            reason = "owner destroyed"
        return super()._settle(state, value, exc, reason, stop=stop)

    def _settled_locked(self, previous: TaskState, state: TaskState) -> None:
        exc = self._exc
        if exc is not None:
            self._exc_frames = _frames_of(exc)

    def _after_settle(self, previous: TaskState, state: TaskState, stop: bool) -> None:
        self._wake_paused()
        registry = self.registry
        if registry is not None:
            registry.count_settled(state)

    # -- GUI thread ---------------------------------------------------------------------------

    @property
    def thread_done(self) -> bool:
        """True once the GUI thread saw the job's thread end (:meth:`thread_ended`)."""
        return self._thread_done

    def thread_ended(self) -> None:
        """The job's thread has ended (``QThread.finished`` handled).  GUI thread."""
        self._thread_done = True
        self._started_seen = True
        if not self._finished:  # cannot happen (run always settles); never hang a job
            self._settle(_FAILED, None, RuntimeError("the job's thread ended without outcome"))

    def after_delivery(self) -> None:
        """Drop what the ended job no longer needs; let the registry release it.  GUI thread."""
        _clear_frames(self._exc_frames)
        self._exc_frames = ()
        registry = self.registry
        if registry is not None:
            # Through the engine: the registry's reference is dropped after the user's
            # finished slots (queued before this drain) have run.
            self._engine.post(lambda: registry.release(self))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


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
    its frames and line numbers (formatting and ``TaskFailure.traceback`` are unchanged);
    only post-mortem inspection of the locals is lost.  Only the job thread's own frames
    are cleared (the thread has ended, so none of them is running).
    """
    for frame in frames:
        with contextlib.suppress(RuntimeError):  # a frame still executing: leave it
            frame.clear()
