"""The worker-thread half of a task, and the narrow interface pools drive it through.

A pool drives a task only through these methods, the way ``concurrent.futures``
executors drive a ``Future`` with ``set_running_or_notify_cancel``/``set_result``
(they are for pool implementations, not for application code)::

    pool (submit, under its lock) ── mark_queued() ──► QUEUED
    a thread of the pool ─────────── execute() ──────► begin() ─► RUNNING
                                                          │  call the function
                                                          └► succeed(v) | fail(e)
    a pool that ships the work ───── begin(watch=False) ─► RUNNING, then
                                     call (the Call to ship), report_progress(...),
                                     watch_timeout() once it really starts,
                                     succeed(v) | fail(e)
    the manager's watchdog ───────── time_out() ──────► FAILED (TaskTimeoutError)
    anyone ───────────────────────── cancel() ────────► CANCELLED

``succeed``/``fail``/``cancel``/``time_out`` make the one terminal transition
(``Outcome._settle``); whichever comes first wins.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QObject

from .._errors import TaskCancelledError, TaskTimeoutError
from .._introspect import PLAIN, WANTS_CTX
from ._call import Call, hand_over_to_gui, holds_qobject, name_of
from ._context import ProgressCallback, TaskContext
from ._outcome import Outcome
from ._state import TaskState

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._engine import DeliveryEngine
    from .._owners import OwnerRecord
    from .._signals import WorkerSignals
    from ._host import PoolSlot, TaskHost

__all__ = ("Execution",)

T = TypeVar("T")

_PENDING, _QUEUED, _RUNNING = TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _FAILED, _CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED


class Execution(Outcome[T]):
    """``TaskHandle``'s first layer over ``Outcome``: the worker side, the pools' interface."""

    __slots__ = (
        "_args",
        "_context",
        "_engine",
        "_fn",
        "_host",
        "_kwargs",
        "_mode",
        "_owner",
        "_pool",
        "_progress",
        "_progress_dirty",
        "_ran",
        "_signals",
        "_started_posted",
        "_status",
        "_timeout",
    )

    _fn: Callable[..., T] | None
    _args: tuple[Any, ...] | None
    _kwargs: dict[str, Any] | None
    _mode: int
    _context: contextvars.Context
    _engine: DeliveryEngine
    _pool: PoolSlot | None
    _host: TaskHost | None
    _owner: OwnerRecord | None
    _timeout: float | None
    _ran: bool
    _started_posted: bool
    _signals: WorkerSignals | None
    _progress: tuple[int, int] | None
    _status: str | None
    _progress_dirty: bool

    if TYPE_CHECKING:

        def _deliver_started(self) -> None: ...

    # -- what a pool calls ------------------------------------------------------------

    @property
    def task(self) -> Any:
        """The task a pool item belongs to (a task is its own item; see ``MapHandle``)."""
        return self

    @property
    def call(self) -> Call:
        """What to run, for a pool that ships the work elsewhere (a process, Dask).

        Raises:
            RuntimeError: The call was already let go of (the task ran).
        """
        fn, args, kwargs = self._fn, self._args, self._kwargs
        if fn is None or args is None or kwargs is None:
            raise RuntimeError(f"task {self.name!r} has already run: its call was let go of")
        return Call(fn, args, kwargs, self._mode)

    def mark_queued(self) -> None:
        """The pool queued the task (called with the pool's lock held)."""
        self._state = _QUEUED

    def begin(self, *, watch: bool = True) -> bool:
        """Move the task to RUNNING; False if it must not run.  Any thread, no pool lock.

        A task cancelled meanwhile is left alone; one whose owner died is cancelled.
        Posts ``started`` when anyone listens and arms the timeout (unless ``watch`` is
        False: a process pool arms it with :meth:`watch_timeout` once the work starts).
        """
        owner = self._owner
        if owner is not None and not owner.alive:
            self.cancel(reason="owner destroyed")  # never start work for a dead widget
            return False
        host = self._host
        with self._lock:
            state = self._state
            if state is not _QUEUED and state is not _PENDING:
                return False
            self._state = _RUNNING
            pool = self._pool
            if pool is not None:
                pool.count_started()
            post_started = self._signals is not None or (host is not None and host.wants_started)
            self._started_posted = post_started
        self._started_at = time.perf_counter()
        self._ran = True
        if post_started:
            self._engine.post(self._deliver_started)
        if watch:
            self.watch_timeout()
        return True

    def watch_timeout(self) -> None:
        """Start the task's timeout clock now (if it has a timeout)."""
        host = self._host
        if self._timeout is not None and host is not None:
            host.watch_timeout(self, self._timeout)

    def succeed(self, value: Any) -> bool:
        """End with a result (any thread); False if the task had already ended."""
        return self._settle(_SUCCEEDED, value, None)

    def fail(self, exc: BaseException) -> bool:
        """End with an exception (any thread); False if the task had already ended."""
        return self._settle(_FAILED, None, exc)

    def time_out(self) -> None:
        """The timeout passed (the watchdog's thread): end failed, ask the work to stop."""
        if self._state is not _RUNNING:
            return
        # A pool that can stop the work (a process pool) says what happens instead.
        pool = self._pool
        fate = (pool.timeout_fate if pool is not None else None) or (
            "its thread keeps running until the function returns (Python threads cannot "
            "be killed), its result will be discarded"
        )
        self._settle(
            _FAILED,
            None,
            TaskTimeoutError(
                f"task {self.name!r} ran longer than its timeout of {self._timeout} s; {fate}"
            ),
            stop=True,
        )

    # -- what the function's context reads (ContextSource) ----------------------------------

    def report_progress(self, current: int, total: int) -> None:
        """Record progress; the engine delivers the latest within a frame.  Any thread."""
        if self._finished:
            return
        self._progress = (current, total)
        if not self._progress_dirty:
            self._progress_dirty = True
            self._engine.mark_dirty(self)  # type: ignore[arg-type]

    def report_status(self, text: str) -> None:
        """Record a status text, coalesced like progress.  Any thread."""
        if self._finished:
            return
        self._status = text
        if not self._progress_dirty:
            self._progress_dirty = True
            self._engine.mark_dirty(self)  # type: ignore[arg-type]

    @property
    def stop_requested(self) -> bool:
        """True once the task was cancelled, timed out, shut down, or its owner died."""
        owner = self._owner
        return self._cancel_requested or (owner is not None and not owner.alive)

    def cancel_event(self) -> threading.Event:
        """The event ``ctx.wait()`` sleeps on (set when a stop is requested)."""
        return self._cancel_event()

    # -- running on a thread of the pool ------------------------------------------------

    def execute(self) -> None:
        """Run the task on the calling (worker) thread and settle it.  For thread pools."""
        if not self.begin():
            return
        try:
            value = self._invoke()
        except TaskCancelledError as exc:
            self._release_inputs()
            if self.stop_requested:
                self._settle(_CANCELLED, None, None)
            else:
                self._settle(_FAILED, None, exc)
        except BaseException as exc:
            self._release_inputs()
            self._settle(_FAILED, None, exc)
        else:
            self._release_inputs()
            if isinstance(value, QObject):
                try:
                    hand_over_to_gui(value, self._engine.thread(), f"task {self.name!r}")
                except TypeError as exc:
                    self._settle(_FAILED, None, exc)
                    return
            self._settle(_SUCCEEDED, value, None)

    def _invoke(self) -> T:
        fn, args, kwargs = self._fn, self._args, self._kwargs
        assert fn is not None
        assert args is not None
        assert kwargs is not None
        mode = self._mode
        run = self._context.run
        if mode == PLAIN:
            return run(fn, *args, **kwargs) if kwargs else run(fn, *args)
        ctx = TaskContext(self)
        if mode == WANTS_CTX:
            return run(fn, *args, ctx=ctx, **kwargs)
        return run(fn, *args, progress_callback=ProgressCallback(ctx), **kwargs)

    def _release_inputs(self) -> None:
        """Let go of the function and its arguments once the call ended (worker thread).

        As an executor does, so that nothing the call needed outlives it.  If a QObject
        is among them (the function's ``self`` included) they are kept until the
        delivery on the GUI thread instead: the last reference to a QObject must never
        be dropped on a worker thread.
        """
        if not holds_qobject(self._fn, self._args, self._kwargs):
            if self._name is None:  # the default name comes from the function
                self._name = name_of(self._fn)
            self._fn = self._args = self._kwargs = None

    def _default_name(self) -> str:
        fn = self._fn
        return name_of(fn) if fn is not None else self._kind
