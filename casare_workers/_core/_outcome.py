"""``Outcome``: settle exactly once, then tell everyone who asked.

Tasks (``TaskHandle``) and long jobs share this core: the state, the one terminal
transition, the value or exception, the cancel request and the event ``ctx.wait()``
sleeps on, blocking access (``wait``/``result``/``exception``), a ``concurrent.futures``
view, done callbacks, and the report of a failure nobody retrieved.  What differs is
plugged in by three hooks::

    _settle(state, value, exc)          any thread; the first call wins
      ├─ under self._lock:  state, value/exc, _settled_locked(previous, state)
      │                                   (a pool's counters, a job registry's)
      └─ after the lock:    cancel request + event  (if cancelled, or stop=True)
                            _after_settle(previous, state, stop)
                                          (stop the work; wake a paused job)
                            done event, Future view, done callbacks (never raise)
                            _hand_over()  (a task: to the delivery engine)

Everything here is plain Python and thread-safe, with no Qt: ``tests/test_outcome.py``
drives it directly.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, Generic, NoReturn, TypeVar, cast

from .._errors import TaskCancelledError
from .._report import report_callback_exception
from ._state import TaskState

__all__ = ("Outcome", "ViewFuture", "reject_callbacks")

#: Where failures that nothing retrieved are reported (a child of the library's logger).
unretrieved_logger = logging.getLogger("casare_workers.unretrieved")

T = TypeVar("T")

_PENDING, _QUEUED, _RUNNING = TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _FAILED, _CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED


class Outcome(Generic[T]):
    """The state and the single outcome of one unit of work.  Thread-safe.

    Subclasses set ``_lock`` (a task shares its pool's lock, so that the pool's counters
    change with the state) and plug in the hooks described in the module docstring.
    """

    __slots__ = (
        "__weakref__",
        "_cancel_ev",
        "_cancel_requested",
        "_done_callbacks",
        "_done_event",
        "_ended_at",
        "_exc",
        "_finished",
        "_future",
        "_lock",
        "_name",
        "_started_at",
        "_state",
        "_unretrieved",
        "_value",
        "_waited",
        "cancel_reason",
        "id",
    )

    #: What the object calls itself in messages ("task", "long job").
    _kind = "task"

    def __init__(self, id: int, name: str | None, lock: threading.Lock) -> None:
        self.id = id
        self._name = name
        self.cancel_reason: str | None = None
        self._lock = lock
        self._state = _PENDING
        self._finished = False
        self._value: Any = None
        self._exc: BaseException | None = None
        self._cancel_requested = False
        self._cancel_ev: threading.Event | None = None
        self._done_event: threading.Event | None = None
        self._future: ViewFuture[Any] | None = None
        self._done_callbacks: list[Callable[[Any], object]] | None = None
        self._waited = False  # a done callback or a Future takes the outcome itself
        self._unretrieved: _Unretrieved | None = None
        self._started_at = 0.0
        self._ended_at = 0.0

    # -- reading ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """A display name (by default the function's qualified name)."""
        name = self._name
        if name is None:
            name = self._name = self._default_name()
        return name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def _default_name(self) -> str:
        """The name when none was given (computed on first use; subclasses say how)."""
        return self._kind

    @property
    def state(self) -> TaskState:
        """The current :class:`TaskState` (as decided, before any delivery)."""
        return self._state

    def done(self) -> bool:
        """True once the outcome is decided (succeeded, failed or cancelled)."""
        return self._finished

    def running(self) -> bool:
        """True while the work runs."""
        return self._state is _RUNNING

    def cancelled(self) -> bool:
        """True if it ended cancelled."""
        return self._state is _CANCELLED

    @property
    def elapsed(self) -> float:
        """Seconds the work has been running (or ran), 0.0 if it never started."""
        if not self._started_at:
            return 0.0
        end = self._ended_at or time.perf_counter()
        return max(0.0, end - self._started_at)

    # -- blocking access ------------------------------------------------------------------

    def _check_blocking(self, timeout: float | None) -> None:
        """Refuse a wait that would freeze the GUI thread (subclasses; default: allow)."""

    def _block(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait on ``event`` (subclasses may refuse a wait that could never end)."""
        return event.wait(timeout)

    def _wait_done(self, timeout: float | None) -> bool:
        """Block until the outcome is decided or ``timeout`` seconds pass; ``done()``."""
        if self._finished:
            return True
        self._check_blocking(timeout)
        ev = self._done_event
        if ev is None:
            with self._lock:
                if self.done():  # re-checked under the lock: it may have ended meanwhile
                    return True
                ev = self._done_event
                if ev is None:
                    ev = self._done_event = threading.Event()
        return self._block(ev, timeout)

    def _outcome(self, timeout: float | None) -> T:
        """The value, or raise the exception (``TaskCancelledError`` if cancelled)."""
        if not self._wait_done(timeout):
            raise TimeoutError(f"{self._kind} {self.name!r} did not end within {timeout} s")
        state = self._state
        if state is _SUCCEEDED:
            return cast(T, self._value)
        if state is _CANCELLED:
            raise TaskCancelledError(
                f"{self._kind} {self.name!r} was {self.cancel_reason or 'cancelled'}"
            )
        exc = self._exc
        assert exc is not None
        self._retrieved()
        raise exc

    def _exception(self, timeout: float | None) -> BaseException | None:
        if not self._wait_done(timeout):
            raise TimeoutError(f"{self._kind} {self.name!r} did not end within {timeout} s")
        if self._state is _CANCELLED:
            raise TaskCancelledError(
                f"{self._kind} {self.name!r} was {self.cancel_reason or 'cancelled'}"
            )
        self._retrieved()
        return self._exc

    # -- a Future view and done callbacks ---------------------------------------------------

    @property
    def future(self) -> Future[T]:
        """A ``concurrent.futures.Future`` mirroring this outcome (made on first access).

        Cancelling the Future cancels the work.  Its callbacks run on the thread that
        settles the outcome, as with any ``concurrent.futures.Future``.
        """
        fut = self._future
        if fut is None:
            created = False
            with self._lock:
                fut = self._future
                if fut is None:
                    fut = self._future = ViewFuture(self)
                    created = self._finished
            if created:  # ended before anyone asked: mirror the outcome now
                _mirror_into(fut, self)
        return fut

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(self)`` on the thread that settles the outcome (now, if settled).

        The low-level hook (the asyncio bridge uses it); GUI code wants ``then()`` or
        the signals, which run on the GUI thread.
        """
        if not callable(fn):
            reject_callbacks(fn=fn)
        self._waited = True
        self.when_done(fn)

    def when_done(self, fn: Callable[[Any], object]) -> None:
        """``add_done_callback`` for the library's own bookkeeping (a watchdog entry).

        The same, except that it does not count as someone taking note of a failure.
        """
        with self._lock:
            if not self._finished:
                if self._done_callbacks is None:
                    self._done_callbacks = []
                self._done_callbacks.append(fn)
                return
        self._call_done_callback(fn)

    def _call_done_callback(self, fn: Callable[[Any], object]) -> None:
        try:
            fn(self)
        except BaseException as exc:
            report_callback_exception(f"a done callback of {self._kind} {self.name!r}", exc)

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self, *, reason: str = "cancelled") -> bool:
        """Ask the work to stop; True if this call cancelled it (subclasses say how)."""
        raise NotImplementedError

    def _request_cancel(self) -> None:
        """Tell the running work to stop (``ctx.cancelled``, ``ctx.wait`` wakes up)."""
        self._cancel_requested = True
        ev = self._cancel_ev
        if ev is not None:
            ev.set()

    def _cancel_event(self) -> threading.Event:
        """The event a ``ctx.wait()`` sleeps on, made on first use (most work never sleeps).

        Set at once if a cancel came first: the canceller only sets an event that exists.
        """
        ev = self._cancel_ev
        if ev is None:
            with self._lock:
                ev = self._cancel_ev
                if ev is None:
                    ev = self._cancel_ev = threading.Event()
        if self._cancel_requested:
            ev.set()
        return ev

    # -- the one terminal transition -------------------------------------------------------------

    def _settled_locked(self, previous: TaskState, state: TaskState) -> None:
        """Hook, called with ``_lock`` held, right after the transition (counters)."""

    def _after_settle(self, previous: TaskState, state: TaskState, stop: bool) -> None:
        """Hook, after the lock: stop the work if the backend can (default: nothing)."""

    def _hand_over(self) -> None:
        """Hook, last: hand the outcome on for delivery (default: nothing)."""

    def _settle(
        self,
        state: TaskState,
        value: Any,
        exc: BaseException | None,
        reason: str = "cancelled",
        *,
        stop: bool = False,
    ) -> bool:
        """Make the one terminal transition; False if the outcome was already decided.

        The outcome is recorded *before* the work is asked to stop (``stop``, or a
        cancellation), so a function that returns early because it saw ``ctx.cancelled``
        can never have that stale value delivered: its own ``_settle`` comes second and
        changes nothing.
        """
        with self._lock:
            if self._finished:
                return False
            previous = self._state
            self._state = state
            self._finished = True
            if state is _CANCELLED and self.cancel_reason is None:
                self.cancel_reason = reason
            self._value = value
            self._exc = exc
            self._settled_locked(previous, state)
            done_event = self._done_event
            future = self._future
            callbacks = self._done_callbacks
            self._done_callbacks = None
        self._ended_at = time.perf_counter()
        try:
            if state is _CANCELLED or stop:
                self._request_cancel()
            self._after_settle(previous, state, stop)
            if done_event is not None:
                done_event.set()
            if future is not None:
                try:
                    _mirror_into(future, self)
                except BaseException as error:  # a Future runs its callbacks catching Exception
                    report_callback_exception(
                        f"a done callback of {self._kind} {self.name!r}", error
                    )
            if callbacks:
                for fn in callbacks:
                    self._call_done_callback(fn)
        finally:
            # Whatever a callback raised (even KeyboardInterrupt), the outcome goes on:
            # every task ends with exactly one of result/error/cancelled.
            self._hand_over()
        return True

    # -- failures nobody looked at -------------------------------------------------------------

    def _retrieved(self) -> None:
        """Someone read the exception: do not report it as unretrieved."""
        note = self._unretrieved
        if note is not None:
            note.retrieved = True

    def _note_unretrieved(self) -> None:
        """Log the failure when this object is freed, unless it is retrieved by then.

        As asyncio does for a future whose exception nobody retrieved: a fire-and-forget
        failure must not vanish without a word, but one read later (``result()``,
        ``failure``) is not reported.
        """
        exc = self._exc
        assert exc is not None
        note = self._unretrieved = _Unretrieved(f"{self._kind} {self.name!r}", exc)
        weakref.finalize(self, note.report).atexit = False


class _Unretrieved:
    """The failure that nothing took note of (see ``Outcome._note_unretrieved``).

    Holds the traceback as text, not the exception: the exception's traceback reaches
    the work's frames and so the object, which its own finalizer would keep alive.
    """

    __slots__ = ("label", "retrieved", "text")

    def __init__(self, label: str, exc: BaseException) -> None:
        self.label = label
        self.text = "".join(traceback.format_exception(exc)).rstrip()
        self.retrieved = False

    def report(self) -> None:
        if not self.retrieved:
            unretrieved_logger.error(
                "%s failed and nothing retrieved its exception (no error slot, "
                "no then(on_error=...), no result() or await):\n%s",
                self.label,
                self.text,
            )


class ViewFuture(Future[T]):
    """A ``Future`` view of an ``Outcome``; ``cancel()`` asks the source to stop.

    It stays pending until the source has really ended (running work cannot be undone
    at once), then mirrors the outcome: result, exception or cancelled.  ``running()``
    reports the source's own state.  Unlike a ``concurrent.futures`` future, cancelling
    a running one succeeds: the source ends cancelled at once (see ``TaskHandle.cancel``).
    """

    def __init__(self, source: Outcome[Any]) -> None:
        super().__init__()
        # Dropped once mirrored: the source holds this view, and a cycle between them
        # would keep the result alive until a garbage collection.
        self._source: Outcome[Any] | None = source

    def cancel(self) -> bool:
        source = self._source
        if self.done() or source is None:
            return super().cancel()
        source.cancel()
        return self.cancelled()

    def running(self) -> bool:
        source = self._source
        return source is not None and not self.done() and source.running()


def _mirror_into(fut: Future[Any], source: Outcome[Any]) -> None:
    """Give ``fut`` the ended ``source``'s outcome (idempotent)."""
    if isinstance(fut, ViewFuture):
        fut._source = None
    state = source._state
    try:
        if state is _SUCCEEDED:
            fut.set_result(source._value)
        elif state is _FAILED:
            assert source._exc is not None
            fut.set_exception(source._exc)
        elif state is _CANCELLED:
            Future.cancel(fut)
            fut.set_running_or_notify_cancel()
    except InvalidStateError:
        pass


def reject_callbacks(**given: object) -> NoReturn:
    """Raise the TypeError naming the first argument that is neither callable nor None."""
    name, value = next((n, v) for n, v in given.items() if v is not None and not callable(v))
    raise TypeError(
        f"{name} must be a callable (a function or a bound method) or None, got {value!r} "
        f"({type(value).__name__}); pass the function itself, without calling it"
    )
