"""The GUI-thread half of a task: signals, continuations and awaiters, exactly once.

The delivery engine calls a settled task's ``_deliver`` once, on the GUI thread::

    _deliver ─ mark delivering (nothing is delivered twice, even from a nested loop)
             ├ started (if not yet), the last progress, then exactly one of
             │ result / error / cancelled, then finished      (the task's signals)
             ├ the continuations registered with then()       (or on their context)
             ├ let go of whatever the worker kept (QObjects)
             ├ mark delivered; run the awaiters' hooks (they resume after finished)
             └ tell the manager (forget the task, update busy)

Nothing is delivered to an owner that died; a continuation with an explicit, live
``context`` still learns that its task was cancelled with the owner.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import shiboken6
from PySide6.QtCore import QObject, QThread, QTimer

from .._report import report_callback_exception
from .._signals import drop_connections, fire, has_listeners
from ._execution import Execution
from ._failure import TaskFailure
from ._state import TaskState

if TYPE_CHECKING:
    from .._engine import DeliveryEngine
    from .._signals import WorkerSignals
    from ._host import TaskHost

__all__ = (
    "CONTEXT_GRACE_MS",
    "Continuation",
    "Delivery",
    "check_context",
    "continuations_lock",
)

#: Guards every task's continuation list and the step into delivery: ``then()`` appends
#: under it (any thread), ``_deliver`` takes the list under it (GUI thread).  Not the
#: pool's lock, which the worker threads hold to pop and settle: a GUI thread blocked on
#: a lock a running worker holds is handed the lock but not the GIL, and runs again only
#: when that worker next blocks, a convoy that made delivery (drain) cost 58 µs a task
#: with 20 000 in flight, 26 µs without it (``benchmarks/bench_hotpath.py``).  Held for
#: a few bytecodes.
continuations_lock = threading.Lock()

logger = logging.getLogger("casare_workers")

T = TypeVar("T")

_SUCCEEDED, _FAILED = TaskState.SUCCEEDED, TaskState.FAILED

#: Milliseconds a continuation waits for its context's thread to run an event loop.
CONTEXT_GRACE_MS = 1000

# A continuation: (on_result, on_error, on_cancelled, context, has_context).
Continuation = tuple[
    Callable[[Any], object] | None,
    Callable[[TaskFailure], object] | None,
    Callable[[], object] | None,
    QObject | None,
    bool,
]


class Delivery(Execution[T]):
    """``TaskHandle``'s second layer: what runs on the GUI thread once the task settled."""

    __slots__ = (
        "_callbacks",
        "_delivery",
        "_emitted_progress",
        "_emitted_status",
        "_hooks",
        "_started_emitted",
    )

    _started_emitted: bool
    _emitted_progress: tuple[int, int] | None
    _emitted_status: str | None
    _delivery: int
    _callbacks: list[Continuation] | None
    _hooks: list[Callable[[], object]] | None

    def _owner_alive(self) -> bool:
        owner = self._owner
        return owner is None or owner.alive

    def when_delivered(self, hook: Callable[[], object]) -> None:
        """Run ``hook()`` once the outcome has been delivered.  GUI thread only.

        Runs now if delivery is complete; otherwise at its end, after ``finished`` and
        the continuations, even when a slot is still inside a nested event loop.  (The
        asyncio bridge resumes awaiters on the GUI loop this way.)
        """
        if self._delivery == 2:
            hook()
        elif self._hooks is None:
            self._hooks = [hook]
        else:
            self._hooks.append(hook)

    def _deliver_started(self) -> None:
        if self._delivery or self._started_emitted:
            return
        self._started_emitted = True
        if not self._owner_alive():
            return
        sig = self._signals
        if sig is not None:
            fire(sig.started, ())
        host = self._host
        if host is not None and host.wants_started:
            host.task_started(self)

    def _flush_progress(self) -> None:
        """Emit the latest progress/status (the engine calls this once per frame)."""
        if self._delivery:
            return
        self._emit_progress()

    def _emit_progress(self) -> None:
        self._progress_dirty = False
        sig = self._signals
        if sig is None or not self._owner_alive():
            return
        if not self._started_emitted:
            self._deliver_started()  # started always precedes progress
        progress = self._progress
        if progress is not None and progress != self._emitted_progress:
            self._emitted_progress = progress
            fire(sig.progress, progress)
        status = self._status
        if status is not None and status != self._emitted_status:
            self._emitted_status = status
            fire(sig.status, (status,))

    def _deliver(self) -> None:
        """Emit the outcome and run the continuations.  GUI thread, exactly once.

        Marked as delivering *before* anything is emitted: a slot that runs a nested
        event loop (a modal dialog) lets the engine drain again, and neither that drain
        nor an awaiter may deliver this task a second time or emit progress after its
        outcome.
        """
        with continuations_lock:
            if self._delivery:
                return
            self._delivery = 1
            callbacks = self._callbacks
            self._callbacks = None
        alive = self._owner_alive()
        host = self._host
        sig = self._signals
        if self._state is _FAILED and not self._observed(sig, callbacks):
            self._note_unretrieved()
        try:
            if alive:
                self._emit_outcome(sig, host)
        finally:
            # Nothing is emitted after finished: the ports drop their callables, and the
            # handle its QObject, here on the GUI thread (a slot closing over the handle
            # would otherwise keep both alive).
            if sig is not None:
                drop_connections(sig)
            self._signals = None
        if callbacks is not None:
            self._run_continuations(callbacks, alive)
        # Whatever the worker kept (a QObject among the arguments) is let go here.
        self._release_on_gui_thread()
        self._delivery = 2
        hooks = self._hooks
        if hooks is not None:
            self._hooks = None
            for hook in hooks:
                try:
                    hook()
                except BaseException as exc:
                    report_callback_exception(f"an awaiter of task {self.name!r}", exc)
        if host is not None:
            host.task_delivered(self)

    def _emit_outcome(self, sig: WorkerSignals | None, host: TaskHost | None) -> None:
        if (
            self._ran
            and not self._started_emitted
            and (sig is not None or (host is not None and host.wants_started))
        ):
            self._started_emitted = True
            if sig is not None:
                fire(sig.started, ())
            if host is not None and host.wants_started:
                host.task_started(self)
        if self._progress_dirty:
            self._emit_progress()
        if sig is not None:
            state = self._state
            if state is _SUCCEEDED:
                fire(sig.result, (self._value,))
            elif state is _FAILED:
                assert self._exc is not None
                fire(sig.error, (TaskFailure.from_exception(self._exc, self.id, self.name),))
            else:
                fire(sig.cancelled, ())
            fire(sig.finished, ())

    def _run_continuations(self, callbacks: list[Continuation], alive: bool) -> None:
        for cont in callbacks:
            if cont[4] or self._state is not _SUCCEEDED or not alive:
                self._run_continuation(cont)  # checks the context or the owner
                continue
            on_result = cont[0]  # the common case, inlined: a result, no context
            if on_result is not None:
                try:
                    on_result(self._value)
                except BaseException as exc:
                    report_callback_exception(f"a continuation of task {self.name!r}", exc)

    def _release_on_gui_thread(self) -> None:
        if self._fn is not None and self._name is None:
            self._name = self._default_name()
        self._fn = self._args = self._kwargs = None

    def _observed(self, sig: WorkerSignals | None, callbacks: list[Continuation] | None) -> bool:
        """True if something takes note of this task's failure at delivery."""
        if sig is not None and has_listeners(sig.error):
            return True
        if callbacks is not None and any(cont[1] is not None for cont in callbacks):
            return True
        # A Future, an awaiter or a done callback receives the exception itself.
        return self._future is not None or self._hooks is not None or self._waited

    def _run_continuation(self, cont: Continuation) -> None:
        on_result, on_error, on_cancelled, context, has_context = cont
        if has_context:
            if context is None or not shiboken6.isValid(context):
                return
        elif not self._owner_alive():
            return
        state = self._state
        call: Callable[[], object] | None
        if state is _SUCCEEDED:
            value = self._value
            call = None if on_result is None else (lambda: on_result(value))
        elif state is _FAILED:
            exc = self._exc
            assert exc is not None
            call = (
                None
                if on_error is None
                else (lambda: on_error(TaskFailure.from_exception(exc, self.id, self.name)))
            )
        else:
            call = on_cancelled
        if call is None:
            return
        if context is not None and context.thread() is not QThread.currentThread():
            _post_to_context(call, self.name, context, self._engine)
            return
        try:
            call()
        except BaseException as exc:
            report_callback_exception(f"a continuation of task {self.name!r}", exc)


def _post_to_context(
    call: Callable[[], object], name: str, context: QObject, engine: DeliveryEngine
) -> None:
    thread = context.thread()
    once = _ContextCall(call, name, thread)
    if thread.isFinished():
        once.fallback()
        return
    # Closures, not the object or its bound method: PySide does not keep a bound
    # method's self alive for singleShot (a use-after-free when it is slotted).
    QTimer.singleShot(0, context, lambda: once.run())
    if not _runs_events(thread):
        # No event loop there now: a QThread still starting, or a thread that never
        # runs one.  A second path makes sure the callback is not dropped.
        QTimer.singleShot(CONTEXT_GRACE_MS, engine.receiver(), lambda: once.fallback())


class _ContextCall:
    """A continuation posted to its context's thread, run exactly once.

    If that thread never runs an event loop (it ended, or it is a thread Qt adopted),
    :meth:`fallback` runs it on the GUI thread with a warning instead of dropping it.
    """

    __slots__ = ("call", "lock", "name", "ran", "thread")

    def __init__(self, call: Callable[[], object], name: str, thread: QThread) -> None:
        self.call = call
        self.name = name
        self.thread = thread
        self.lock = threading.Lock()
        self.ran = False

    def _claim(self) -> bool:
        with self.lock:
            if self.ran:
                return False
            self.ran = True
            return True

    def run(self) -> None:
        """Runs on the context's thread."""
        if self._claim():
            _guarded(self.call, self.name)

    def fallback(self) -> None:
        """Runs on the GUI thread once the grace period is over."""
        with contextlib.suppress(RuntimeError):  # the thread object is gone: it ended
            if not self.thread.isFinished() and _runs_events(self.thread):
                return  # its loop runs now: the posted call will be run there
        if self._claim():
            logger.warning(
                "task %r: the thread of then()'s context runs no event loop; running its "
                "continuation on the GUI thread instead",
                self.name,
            )
            _guarded(self.call, self.name)


def _guarded(call: Callable[[], object], name: str) -> None:
    try:
        call()
    except BaseException as exc:
        report_callback_exception(f"a continuation of task {name!r}", exc)


def _runs_events(thread: QThread) -> bool:
    """False for a thread that cannot run a Qt event loop now.

    A finished ``QThread``, or a running thread with no event dispatcher: a thread Qt
    adopted (a pool thread, a plain ``threading.Thread``), which never runs one, or a
    ``QThread`` that has not created its dispatcher yet.  A ``QThread`` not started yet
    counts as able (its loop starts with it).
    """
    if thread.isFinished():
        return False
    if not thread.isRunning():
        return True
    try:
        return thread.eventDispatcher() is not None
    except RuntimeError:  # a stale wrapper of a dispatcher: there is one
        return True


def check_context(context: object, engine: DeliveryEngine) -> None:
    """Validate ``then(context=...)``: a QObject whose thread can run the callback.

    Refused when that is certain now: the context's thread has finished, or it is the
    calling thread and runs no event loop (then() called on a pool thread with an object
    made there).  A thread that merely has no loop *yet* (a ``QThread`` starting) is
    accepted; the delivery checks again and runs the callback on the GUI thread, with a
    warning, rather than drop it.

    Raises:
        TypeError: ``context`` is not a QObject.
        ValueError: Its thread can never run the callback.
    """
    if not isinstance(context, QObject):
        raise TypeError(
            f"then(context=...) must be a QObject whose thread runs the callback, "
            f"got {type(context).__name__}"
        )
    thread = context.thread()
    if thread is engine.thread():
        return
    if thread.isFinished() or (thread is QThread.currentThread() and not _runs_events(thread)):
        raise ValueError(
            f"then(context={context!r}): that object lives in a thread that runs no Qt "
            "event loop (a pool thread, a plain threading.Thread or a finished QThread), "
            "so the callback could never run there; pass a context that lives on the GUI "
            "thread or in a QThread running its event loop, or omit context"
        )
