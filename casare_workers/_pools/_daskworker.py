"""What runs on a Dask worker for a :class:`~casare_workers._pools._daskpool.DaskPool` task.

This module is shipped *by value* (``cloudpickle.register_pickle_by_value``): the
cluster's workers need Dask, and the task's own module, but neither casare_workers
nor Qt.  So it imports only the standard library at the top, ``distributed`` inside
the functions (it is there on any Dask worker), and nothing from casare_workers.

Progress travels as Dask *structured events*: ``Worker.log_event(topic, msg)`` goes to
the scheduler, which forwards it to the client that subscribed to the topic (the
pool, on its event-loop thread), which feeds the GUI's coalescing.  Chosen over a
``Variable`` (polled: every client round trip costs a scheduler request, even when
nothing changed) and over the old Pub/Sub (removed from distributed).  The worker
throttles to one event per :data:`EVENT_INTERVAL` per task and the final value rides
with the result, so the GUI always ends on the last value.

Cancellation travels as a ``distributed.Event`` named after the task: ``ctx.wait``
blocks on it (waking at once), ``ctx.cancelled`` asks the scheduler at most every
:data:`CANCEL_POLL` seconds (each check is a network round trip).

:class:`DaskContext` keeps the one context contract (``tests/test_context_contract.py``):
the same public methods as ``casare_workers.TaskContext``, with the same meaning.  Its
``raise_if_cancelled`` raises ``casare_workers.TaskCancelledError`` whenever the worker
has casare_workers loaded, which is the case whenever the task's own code can name
that class; otherwise (a cluster without casare_workers) its base,
``concurrent.futures.CancelledError``, which is what such code can catch.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
import time
from concurrent.futures import CancelledError
from typing import Any

__all__ = ("CANCEL_POLL", "EVENT_INTERVAL", "DaskContext", "run", "run_chunk", "run_plain")

#: Seconds between two progress events of one task (a cluster is not a local pipe).
EVENT_INTERVAL = 0.05
#: Seconds ``ctx.cancelled`` caches the scheduler's answer.
CANCEL_POLL = 0.1

_PLAIN, _WANTS_CTX, _WANTS_PROGRESS_CALLBACK = 0, 1, 2  # as casare_workers._introspect


class DaskContext:
    """The ``ctx`` a task function receives on a Dask worker.

    The same methods as ``casare_workers.TaskContext`` (duck-typed: this module must
    not import casare_workers).
    """

    def __init__(self, task_id: int, name: str, topic: str, cancel_name: str) -> None:
        self._task_id = task_id
        self._name = name
        self._topic = topic
        self._cancel_name = cancel_name
        self._progress: tuple[int, int] | None = None
        self._status: str | None = None
        self._lock = threading.Lock()
        self._last_sent = 0.0
        self._timer: threading.Timer | None = None
        self._cancelled = False
        self._checked = 0.0
        self._event: Any = None
        try:
            self._worker: Any = _distributed().get_worker()
        except ValueError:  # not on a Dask worker (called directly): progress goes nowhere
            self._worker = None

    # -- progress -------------------------------------------------------------------

    def progress(self, current: int, total: int = 0) -> None:
        """Report progress ``current`` of ``total`` (``total <= 0``: unknown)."""
        try:
            self._progress = (int(current), int(total))
        except (TypeError, ValueError):
            raise TypeError(
                f"ctx.progress(current, total) takes two integers, got {current!r} and {total!r}"
            ) from None
        self._changed()

    def status(self, text: str) -> None:
        """Report a short status text (coalesced like progress)."""
        self._status = str(text)
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # a send is already scheduled and will carry the latest values
            wait = self._last_sent + EVENT_INTERVAL - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._send_scheduled)
                self._timer.daemon = True
                self._timer.start()
                return
        self._send()

    def _send_scheduled(self) -> None:
        with self._lock:
            self._timer = None
        self._send()

    def _send(self) -> None:
        self._last_sent = time.monotonic()
        worker = self._worker
        if worker is None:
            return
        progress = self._progress
        message = [self._task_id, *(progress or (-1, -1)), self._status]
        try:
            worker.log_event(self._topic, message)
        except Exception:  # the worker is closing: progress is best effort
            pass

    def _final(self) -> tuple[tuple[int, int] | None, str | None]:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        return self._progress, self._status

    # -- cancellation -----------------------------------------------------------------

    def _cancel_event(self) -> Any:
        if self._event is None:
            self._event = _distributed().Event(self._cancel_name)
        return self._event

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, timed out or shut down in the GUI process."""
        if self._cancelled or self._worker is None:
            return self._cancelled
        now = time.monotonic()
        if now - self._checked >= CANCEL_POLL:
            self._checked = now
            try:
                self._cancelled = bool(self._cancel_event().is_set())
            except Exception:  # the scheduler is gone: nobody is waiting for us
                self._cancelled = True
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelledError`` if :attr:`cancelled` (see the module docstring)."""
        if self.cancelled:
            raise _cancelled_error_class()(f"task {self._name!r} was cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once on cancellation.

        Returns:
            True if the task was cancelled (stop now), False if the time ran out.
        """
        if self.cancelled:
            return True
        timeout = max(0.0, timeout)  # a deadline already passed: False at once, as on a thread
        if self._worker is None:
            time.sleep(timeout)
            return False
        try:
            self._cancelled = bool(self._cancel_event().wait(timeout))
        except Exception:
            self._cancelled = True
        return self._cancelled

    @property
    def task_id(self) -> int:
        """The id of the task (the GUI process's ``TaskHandle.id``)."""
        return self._task_id

    @property
    def name(self) -> str:
        """The name of the task."""
        return self._name


def _cancelled_error_class() -> type[BaseException]:
    # Looked up, never imported: importing casare_workers would import Qt.
    errors = sys.modules.get("casare_workers._errors")
    found = getattr(errors, "TaskCancelledError", None)
    if isinstance(found, type) and issubclass(found, CancelledError):
        return found
    return CancelledError


def _distributed() -> Any:
    # Imported when used: present on every Dask worker, absent from a plain install.
    return importlib.import_module("distributed")


class _ProgressCallback:
    """The tutorial's ``progress_callback``: ``.emit(n)`` or ``(n)``."""

    def __init__(self, ctx: DaskContext) -> None:
        self._ctx = ctx

    def emit(self, current: int, total: int = 100) -> None:
        self._ctx.progress(current, total)

    __call__ = emit


def run_plain(payload: bytes) -> tuple[Any, None, None]:
    """Run one task that takes no ``ctx``: the common case, kept tiny on purpose.

    Everything this function refers to travels by value with every task, and the
    worker rebuilds it each time.  Without :class:`DaskContext` in it, a trivial round
    trip through the pool took 11 ms instead of 19 ms on the 2-core test machine, the
    same as Dask's own (``benchmarks/bench_executors.py --contender casare-dask``).
    """
    fn, args, kwargs = pickle.loads(payload)
    return fn(*args, **kwargs), None, None


def run(
    task_id: int, name: str, mode: int, topic: str, cancel_name: str, payload: bytes
) -> tuple[Any, tuple[int, int] | None, str | None]:
    """Run one task on this worker; return ``(value, final progress, final status)``.

    The function's exception propagates unchanged: Dask carries it to the client.
    """
    fn, args, kwargs = pickle.loads(payload)
    if mode == _PLAIN:
        return fn(*args, **kwargs), None, None
    ctx = DaskContext(task_id, name, topic, cancel_name)
    if mode == _WANTS_CTX:
        value = fn(*args, ctx=ctx, **kwargs)
    else:
        value = fn(*args, progress_callback=_ProgressCallback(ctx), **kwargs)
    progress, status = ctx._final()
    return value, progress, status


def run_chunk(name: str, start: int, fn_payload: bytes, items: bytes) -> list[Any]:
    """Apply a ``map``'s function to one chunk of its items."""
    fn = pickle.loads(fn_payload)[0]  # pickled as (fn, (), {})
    results = []
    for offset, item in enumerate(pickle.loads(items)):
        try:
            results.append(fn(item))
        except BaseException as exc:
            exc.add_note(f"raised by item {start + offset} of map({name})")
            raise
    return results
