"""What runs inside each worker process of a process pool (``_processpool.ProcessPool``).

Each worker process is the single process of its own ``ProcessPoolExecutor`` and runs
one call at a time (the next one may already wait in its pipe).  Besides the
executor's own call and result queues it shares three things with the GUI process,
handed over when it is spawned (:func:`initialize`):

* ``channel``: a duplex pipe.  Child -> parent: coalesced progress and status, at most
  one message per :data:`SEND_INTERVAL`, sent by a small daemon thread so that
  ``ctx.progress`` itself costs a few attribute stores.  Parent -> child: the ids of
  cancelled tasks; they wake ``ctx.wait``, and a call whose task was cancelled before
  it started is skipped.
* ``cancel_flag``: a shared 64-bit integer.  The parent writes the id of the running
  task when it cancels it; ``ctx.cancelled`` is one shared-memory read (no system
  call), so functions may check it in tight loops.
* ``running``: a shared 64-bit integer where the worker writes the sequence number of
  the call it starts, so that after a crash the parent knows which call died with the
  process and which one had not started yet (that one is queued again, not failed).
  :data:`UP` once the worker has started: a process that dies while it is still 0
  died starting up (importing the application's main module, usually), and respawning
  it would only fail again.

Once set up, the worker says so over ``channel`` (the message :data:`UP_MESSAGE`): the
parent starts a task's timeout only then, so that ``timeout=`` counts the run time,
not the start-up of a fresh interpreter.

Everything a call produces (its value or its exception, plus the final progress and
status) is pickled here into one ``bytes`` object, so the executor only ever carries
bytes: a result or an exception that cannot be pickled, or rebuilt in the GUI process,
fails that one task with a clear ``SerializationError`` instead of breaking the pool.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from .._core._context import ProgressCallback as _ProgressCallback
from .._core._context import TaskContext
from .._core._context import coerce_progress as _coerce_progress
from .._errors import SerializationError, TaskCancelledError, describe_exception
from .._introspect import WANTS_CTX, WANTS_PROGRESS_CALLBACK

__all__ = (
    "NICENESS",
    "SEND_INTERVAL",
    "SKIPPED",
    "UP",
    "UP_MESSAGE",
    "RemoteContext",
    "initialize",
    "run_call",
    "run_chunk",
)

#: Seconds between two progress messages from one worker (one frame at 60 Hz).
SEND_INTERVAL = 0.016
#: How much lower a worker's scheduling priority is than the GUI process's (POSIX
#: ``nice``; Windows gets BELOW_NORMAL_PRIORITY_CLASS): a pool as large as the machine
#: must not starve the window of CPU time.
NICENESS = 5
#: The outcome of a call whose task was cancelled before it started (or of a map chunk
#: that stopped between two items because its map was cancelled).
SKIPPED = b""
#: What ``running`` holds once the worker has started (no call yet).
UP = -1
#: The progress-channel message a worker sends once it is set up (task ids start at 1).
UP_MESSAGE = (0, -1, None, None)

_channel: Connection | None = None
_cancel_flag: Any = None  # a multiprocessing RawValue('q'), shared with the parent
_running: Any = None  # ditto: the sequence number of the call being run
_cancelled_ids: set[int] = set()  # tasks the parent said were cancelled
_sender: _Sender | None = None
_recv_lock = threading.Lock()


def initialize(channel: Connection, cancel_flag: Any, running: Any) -> None:
    """Set the worker process up (the executor's initializer; runs once per process)."""
    global _channel, _cancel_flag, _running, _sender
    # Ctrl+C in a terminal reaches the whole process group: the GUI process decides
    # what happens to the work, a worker must not die half-way through a task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority()
    _channel = channel
    _cancel_flag = cancel_flag
    _running = running
    _sender = _Sender(channel)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with_parent, args=(parent,), name="casare-parent-watch", daemon=True
        ).start()
    running.value = UP
    try:
        channel.send(UP_MESSAGE)  # no other thread sends yet: the sender starts on demand
    except (OSError, ValueError):  # the parent went away: nothing to report to
        pass


def _lower_priority() -> None:
    try:
        if hasattr(os, "nice"):
            os.nice(NICENESS)
            return
        windll = getattr(ctypes, "windll", None)
        if windll is not None:
            below_normal = 0x00004000
            windll.kernel32.SetPriorityClass(windll.kernel32.GetCurrentProcess(), below_normal)
    except OSError:  # not allowed here: run at normal priority
        pass


def _exit_with_parent(parent: BaseProcess) -> None:
    """End this worker when the GUI process is gone (killed, crashed).

    A worker only notices a dead parent when it reads its next call; one stuck in a
    task would otherwise live on as an orphan for ever.
    """
    wait([parent.sentinel])
    os._exit(1)


class _Sender:
    """Sends the latest progress of the running task, at most once per SEND_INTERVAL."""

    def __init__(self, channel: Connection) -> None:
        self._channel = channel
        self._cv = threading.Condition(threading.Lock())
        self._pending: RemoteContext | None = None
        self._thread: threading.Thread | None = None
        self._last = 0.0

    def mark(self, ctx: RemoteContext) -> None:
        with self._cv:
            self._pending = ctx
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="casare-progress-sender", daemon=True
                )
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        cv = self._cv
        while True:
            with cv:
                while self._pending is None:
                    cv.wait()
                wait = self._last + SEND_INTERVAL - time.monotonic()
                if wait > 0:
                    cv.wait(wait)
                    continue
                ctx = self._pending
                self._pending = None
                # Clear the flag before reading the values: a value written after the
                # read marks the context again, so nothing is lost.
                ctx._dirty = False
                message = (ctx._task_id, ctx._chunk, ctx._progress_value, ctx._status_value)
            self._last = time.monotonic()
            try:
                self._channel.send(message)
            except (OSError, ValueError):  # the parent went away: nothing to report to
                return


class RemoteContext(TaskContext):
    """The ``ctx`` a task function receives inside a worker process.

    Same methods as :class:`~casare_workers.TaskContext`: progress and status reach the
    GUI through the same coalescing (latest value wins, one update per frame), and
    cancellation is seen within a shared-memory read.
    """

    __slots__ = ("_chunk", "_dirty", "_name", "_progress_value", "_status_value", "_task_id")

    def __init__(self, task_id: int, name: str, chunk: int = -1) -> None:
        self._task_id = task_id
        self._name = name
        self._chunk = chunk
        self._progress_value: tuple[int, int] | None = None
        self._status_value: str | None = None
        self._dirty = False

    def progress(self, current: int, total: int = 0) -> None:
        """Report progress ``current`` of ``total`` (``total <= 0``: unknown)."""
        if current.__class__ is not int or total.__class__ is not int:
            current, total = _coerce_progress(current, total)
        self._progress_value = (current, total)
        if not self._dirty:
            self._dirty = True
            _mark(self)

    def status(self, text: str) -> None:
        """Report a short status text (coalesced like progress)."""
        self._status_value = str(text)
        if not self._dirty:
            self._dirty = True
            _mark(self)

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, timed out or shut down in the GUI process."""
        flag = _cancel_flag
        return (flag is not None and flag.value == self._task_id) or (
            self._task_id in _cancelled_ids
        )

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelledError`` if :attr:`cancelled`."""
        if self.cancelled:
            raise TaskCancelledError(f"task {self._name!r} was cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once on cancellation.

        Returns:
            True if the task was cancelled (stop now), False if the time ran out.
        """
        deadline = time.monotonic() + timeout
        while not self.cancelled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            channel = _channel
            if channel is None:  # not in a worker process (a direct call in a test)
                time.sleep(remaining)
                continue
            with _recv_lock:
                if channel.poll(remaining):
                    _drain(channel)
        return True

    @property
    def task_id(self) -> int:
        """The id of the task (the same as the GUI process's ``TaskHandle.id``)."""
        return self._task_id

    @property
    def name(self) -> str:
        """The name of the task."""
        return self._name


def _mark(ctx: RemoteContext) -> None:
    sender = _sender
    if sender is not None:
        sender.mark(ctx)


def _drain(channel: Connection) -> None:
    # Called with _recv_lock held: record the cancelled task ids the parent sent.
    try:
        while channel.poll(0):
            data = channel.recv_bytes()
            if data:
                _cancelled_ids.add(int(data))
    except (EOFError, OSError, ValueError):
        pass


def _begin(seq: int, task_id: int) -> bool:
    """Mark call ``seq`` as started; False if its task was cancelled meanwhile."""
    running = _running
    if running is not None:
        running.value = seq  # before anything that could crash
    channel = _channel
    if channel is not None:
        with _recv_lock:
            if len(_cancelled_ids) > 1024:  # ids of long-finished tasks
                _cancelled_ids.clear()
            _drain(channel)
    flag = _cancel_flag
    return task_id not in _cancelled_ids and not (flag is not None and flag.value == task_id)


# Unpickling and pickling run arbitrary code of the user's classes (``__reduce__``,
# ``__setstate__``), which may raise anything, SystemExit included: each is contained
# here and ends only its own task, as a SerializationError that says what failed.


def _load(payload: bytes, name: str) -> Any:
    try:
        return pickle.loads(payload)
    except BaseException as exc:
        raise SerializationError(
            f"task {name!r} could not be loaded in the worker process "
            f"({describe_exception(exc)}); its function and arguments must be importable "
            "there: define the function in a module (not in an interactive session) and "
            "guard the application's entry point with  if __name__ == '__main__':"
        ) from exc


def _final(ctx: RemoteContext | None) -> tuple[tuple[int, int] | None, str | None]:
    if ctx is None:
        return None, None
    return ctx._progress_value, ctx._status_value


def _pack_result(value: Any, ctx: RemoteContext | None, name: str) -> bytes:
    progress, status = _final(ctx)
    try:
        return pickle.dumps((True, value, None, progress, status), pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:
        error = SerializationError(
            f"the result of task {name!r} ({type(value).__qualname__}) cannot be pickled "
            f"to send it back to the GUI process ({describe_exception(exc)}); return "
            "plain data (numbers, strings, bytes, lists, dicts, dataclasses) instead"
        )
        error.__cause__ = exc
        return _pack_error(error, ctx, name)


def _pack_error(exc: BaseException, ctx: RemoteContext | None, name: str) -> bytes:
    progress, status = _final(ctx)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = pickle.dumps((False, exc, text, progress, status), pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # the GUI process must be able to rebuild it, too
        return data
    except BaseException as why:
        stand_in = SerializationError(
            f"task {name!r} raised {describe_exception(exc)}, which cannot be sent "
            f"back to the GUI process ({describe_exception(why)}); the original "
            "traceback is attached"
        )
        return pickle.dumps((False, stand_in, text, progress, status), pickle.HIGHEST_PROTOCOL)


def run_call(seq: int, task_id: int, name: str, mode: int, payload: bytes) -> bytes:
    """Run one task in this worker process; return its pickled outcome."""
    if not _begin(seq, task_id):
        return SKIPPED
    ctx: RemoteContext | None = None
    try:
        fn, args, kwargs = _load(payload, name)
        if mode == WANTS_CTX:
            ctx = RemoteContext(task_id, name)
            value = fn(*args, ctx=ctx, **kwargs)
        elif mode == WANTS_PROGRESS_CALLBACK:
            ctx = RemoteContext(task_id, name)
            value = fn(*args, progress_callback=_ProgressCallback(ctx), **kwargs)
        else:
            value = fn(*args, **kwargs)
    except BaseException as exc:
        return _pack_error(exc, ctx, name)
    return _pack_result(value, ctx, name)


def run_chunk(
    seq: int, task_id: int, name: str, start: int, fn_payload: bytes, items: bytes
) -> bytes:
    """Run ``fn`` over one chunk of a ``map``; progress counts the items done here."""
    if not _begin(seq, task_id):
        return SKIPPED
    ctx = RemoteContext(task_id, name, start)
    try:
        fn: Callable[[Any], Any] = _load(fn_payload, name)[0]  # pickled as (fn, (), {})
        chunk: list[Any] = _load(items, name)
    except BaseException as exc:
        return _pack_error(exc, ctx, name)
    total = len(chunk)
    flag = _cancel_flag
    results = []
    for offset, item in enumerate(chunk):
        if (flag is not None and flag.value == task_id) or task_id in _cancelled_ids:
            return SKIPPED
        try:
            results.append(fn(item))
        except BaseException as exc:
            exc.add_note(f"raised by item {start + offset} of map({name})")
            return _pack_error(exc, ctx, name)
        ctx._progress_value = (offset + 1, total)
        if not ctx._dirty:
            ctx._dirty = True
            _mark(ctx)
    return _pack_result(results, ctx, name)
