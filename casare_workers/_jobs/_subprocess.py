"""Subprocess jobs: run a command, stream its lines to the GUI, stop the whole tree.

Two forms over one implementation:

* :func:`run_process`, a coroutine for callers inside coroutines (a qasync slot, a
  ``LongJob``'s async work, a ``LoopThread`` call): it runs on the caller's loop and
  calls ``on_line`` there;
* :class:`SubprocessJob`, a :class:`~casare_workers.LongJob` whose async work is
  ``run_process`` on the job's own loop; each line is emitted on the GUI thread as
  ``line(text, stream)``, before the outcome.

Built on ``asyncio`` subprocesses rather than ``QProcess``:

* it runs on any asyncio loop (a job's, a ``LoopThread``'s, qasync's), where a
  ``QProcess`` needs a Qt event loop in its thread and prints "Destroyed while process
  is still running" if its owner dies first;
* the child starts in a new session (its own process group) through ``Popen``'s
  ``start_new_session``, done in C after ``fork``; the Qt way needs Qt >= 6.6
  (``UnixProcessParameters``) or runs a Python callback in the forked child;
* the overall timeout is ``asyncio.timeout`` around *everything* (output and exit), and
  cancellation is the task's own cancellation: no polling loop, no timer;
* the child's exit and the end of its output are separate events (the transport's
  protocol), so a grandchild that keeps the pipes open cannot hold the caller.

Stopping (timeout, cancel) is: SIGTERM to the process group, ``terminate_grace``
seconds for the child to exit, then SIGKILL to the group, which also reaches
grandchildren that ignored SIGTERM or outlived their parent.  On Windows the child gets
its own process group and the tree is ended with ``taskkill /T`` (``/F`` after the grace).

At interpreter exit, every tree still being run is killed at once (SIGKILL to the
group, ``taskkill /T /F``): the coroutine that would have stopped it is abandoned there
(its thread is a daemon or a parked job), and a child in its own session, above all one
that ignores SIGTERM, would otherwise outlive the application.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import inspect
import os
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from .._engine import DeliveryEngine
from .._errors import ConfigurationError
from .._report import report_callback_exception
from .._validation import check_seconds
from ._context import JobContext
from ._longjob import LongJob

if TYPE_CHECKING:
    from .._manager import WorkerManager

__all__ = ("ProcessResult", "SubprocessJob", "run_process")

#: Lines kept for :attr:`ProcessResult.output_tail` by default.
DEFAULT_TAIL_LINES = 50
#: Seconds a child gets between SIGTERM and SIGKILL by default.
DEFAULT_TERMINATE_GRACE = 3.0
#: Seconds to read the output left in the pipes once the child has exited.  A
#: grandchild that inherited the pipes can keep them open for ever; it must not hold us.
DEFAULT_DRAIN_TIMEOUT = 1.0
#: A "line" longer than this (no newline in sight) is cut and delivered in pieces.
MAX_LINE = 65_536
_READ_SIZE = 65_536
_LINES_PER_DELIVERY = 256

_WINDOWS = sys.platform == "win32"
_NEWLINE = re.compile(r"\r\n|\r|\n")

LineCallback = Callable[[str, str], object]
#: What ``on_line`` may be: ``(text, stream)`` or ``(text)``.
OnLine = Callable[[str, str], object] | Callable[[str], object]


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a command ended.

    A non-zero exit code or a timeout is a *result* (the command ran and ended), not an
    error; errors are for commands that could not run (``FileNotFoundError``, ...).

    Attributes:
        command: The command as run.
        returncode: The exit code; negative for a signal on POSIX (``-9``: killed).
        output_tail: The last lines of output (both streams, in arrival order).
        stderr_tail: The last lines of stderr alone (empty when stderr was merged).
        timed_out: True if the overall timeout stopped the command.
        elapsed: Seconds from start to exit.
    """

    command: tuple[str, ...]
    returncode: int
    output_tail: tuple[str, ...]
    stderr_tail: tuple[str, ...]
    timed_out: bool
    elapsed: float

    @property
    def ok(self) -> bool:
        """True if the command exited with code 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out


class _LineSplitter:
    r"""Splits decoded text into lines on ``\n``, ``\r\n`` and a lone ``\r``.

    A lone ``\r`` is a line end because progress bars (pip, playwright) redraw with it;
    a ``\r\n`` split across two reads is still one line end.
    """

    __slots__ = ("_buf", "_skip_lf")

    def __init__(self) -> None:
        self._buf = ""
        self._skip_lf = False

    def feed(self, text: str) -> list[str]:
        if not text:
            return []
        if self._skip_lf and text[0] == "\n":
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        parts = _NEWLINE.split(self._buf + text)
        self._buf = parts.pop()
        while len(self._buf) > MAX_LINE:
            parts.append(self._buf[:MAX_LINE])
            self._buf = self._buf[MAX_LINE:]
        return parts

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, ""
        return [rest] if rest else []


class _ProcessProtocol(asyncio.SubprocessProtocol):
    """Receives the child's output and exit straight from the transport.

    The documented low-level protocol rather than ``create_subprocess_exec``'s stream
    readers: there, ``Process.wait()`` returns only once every pipe is closed, so a
    grandchild that inherited stdout holds the caller until it exits.  Here the exit
    (``process_exited``) and the pipes' end are separate events.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        emit: Callable[[str, str], None],
        encoding: str,
        errors: str,
        merged: bool,
    ) -> None:
        self._emit = emit
        fds = (1,) if merged else (1, 2)
        self._streams = {
            fd: (
                "stdout" if fd == 1 else "stderr",
                codecs.getincrementaldecoder(encoding)(errors),
                _LineSplitter(),
            )
            for fd in fds
        }
        self._open = set(fds)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        name, decoder, splitter = self._streams[fd]
        text = decoder.decode(data) if isinstance(data, bytes) else data
        for line in splitter.feed(text):
            self._emit(line, name)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self._open:
            self._open.discard(fd)
            self._flush(fd)
            if not self._open and not self.pipes_closed.done():
                self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def flush_all(self) -> None:
        """Deliver partial lines still buffered (the pipes were abandoned)."""
        for fd in list(self._open):
            self._flush(fd)

    def _flush(self, fd: int) -> None:
        name, decoder, splitter = self._streams[fd]
        for line in splitter.feed(decoder.decode(b"", final=True)) + splitter.flush():
            self._emit(line, name)


def _check_command(command: object) -> tuple[str, ...]:
    if isinstance(command, str | bytes):
        raise TypeError(
            "command must be a sequence of arguments, e.g. [sys.executable, '-m', 'pip', "
            "'install', name]; a single string is not split (and no shell is used)"
        )
    if not isinstance(command, Sequence) or not command:
        raise TypeError(f"command must be a non-empty sequence of arguments, got {command!r}")
    try:
        return tuple(os.fspath(part) if not isinstance(part, str) else part for part in command)
    except TypeError:
        raise TypeError(
            f"every argument of the command must be a str or a path, got {command!r}"
        ) from None


def _line_callback(on_line: Callable[..., object] | None) -> LineCallback | None:
    """Call ``on_line`` the way it is declared: ``(text, stream)`` or ``(text)``.

    A widget's slot (``log.appendPlainText``) takes the text alone; checked now for
    Python callables, and at the first line for builtins (Qt methods have no signature
    to read), so that a one-argument callback never silently drops every line.
    """
    if on_line is None:
        return None
    if not callable(on_line):
        raise TypeError(
            f"on_line must be a callable taking (text, stream) or (text), got "
            f"{type(on_line).__name__}"
        )
    try:
        signature = inspect.signature(on_line)
    except (TypeError, ValueError):  # a builtin, e.g. a Qt method
        return _DecideAtFirstLine(on_line)
    for count in (2, 1):
        try:
            signature.bind(*("", "")[:count])
        except TypeError:
            continue
        if count == 2:
            return on_line
        return lambda text, _stream: on_line(text)
    raise TypeError(f"on_line must take (text, stream) or (text), got {_name(on_line)}{signature}")


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class _DecideAtFirstLine:
    """An ``on_line`` without a readable signature: try ``(text, stream)``, else ``(text)``."""

    __slots__ = ("_fn", "_text_only")

    def __init__(self, fn: Callable[..., object]) -> None:
        self._fn = fn
        self._text_only: bool | None = None

    def __call__(self, text: str, stream: str) -> None:
        text_only = self._text_only
        if text_only is None:
            try:
                self._fn(text, stream)
            except TypeError as exc:
                tb = exc.__traceback__
                if tb is not None and tb.tb_next is not None:
                    raise  # raised inside the callback, not by the call itself
                try:
                    self._fn(text)
                except TypeError:
                    raise exc from None  # neither form: report the first mistake
                self._text_only = True
            else:
                self._text_only = False
        elif text_only:
            self._fn(text)
        else:
            self._fn(text, stream)


async def run_process(
    command: Sequence[str | os.PathLike[str]],
    *,
    on_line: OnLine | None = None,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = True,
    terminate_grace: float = DEFAULT_TERMINATE_GRACE,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    tail_lines: int = DEFAULT_TAIL_LINES,
    encoding: str = "utf-8",
    errors: str = "replace",
) -> ProcessResult:
    """Run ``command``, streaming its output line by line; stop the whole tree when asked.

    Runs on the calling coroutine's loop; ``on_line`` is called there, on that loop's
    thread: the GUI thread for a coroutine on the qasync loop (an ``async_slot``), but
    the job's own thread inside a ``LongJob``'s async work or a ``LoopThread`` call,
    where it must not touch widgets (report with ``ctx.status(text)`` there, or use a
    :class:`SubprocessJob`, whose ``line`` signal is emitted on the GUI thread).
    Cancelling the awaiting task terminates, then kills, the child's process tree, and
    re-raises ``CancelledError``.

    Args:
        command: The program and its arguments (no shell).
        on_line: Called for every line, without its line ending, as
            ``on_line(text, stream)`` (``stream`` is ``"stdout"`` or ``"stderr"``;
            merged output is ``"stdout"``), or as ``on_line(text)`` if it takes one
            argument (``log.appendPlainText``).
        timeout: Overall seconds for the command (output *and* exit); None: no limit.
            On expiry the tree is stopped and the result has ``timed_out=True``.
        cwd: Working directory.
        env: The child's environment (default: inherited).
        merge_stderr: True: one stream, in the order the child wrote it.
        terminate_grace: Seconds between SIGTERM and SIGKILL.
        drain_timeout: Seconds to read leftover output after the child exited.
        tail_lines: Lines kept in the result.
        encoding: How output bytes are decoded.
        errors: The decoder's error handler (undecodable bytes never fail the run).

    Returns:
        A :class:`ProcessResult`.

    Raises:
        FileNotFoundError: The program does not exist (the OS error, unchanged).
        PermissionError: It is not executable.
        TypeError: ``on_line`` takes neither ``(text, stream)`` nor ``(text)``.
        asyncio.CancelledError: The awaiting task was cancelled (the tree was stopped).

    Example:
        >>> @async_slot                                                # doctest: +SKIP
        ... async def install(self):  # on the GUI loop: on_line may touch widgets
        ...     result = await run_process(
        ...         [sys.executable, "-m", "playwright", "install", "chromium"],
        ...         on_line=self.log.appendPlainText, timeout=600)
        ...     return result.ok
    """
    argv = _check_command(command)
    check_seconds("timeout", timeout, allow_none=True)
    check_seconds("terminate_grace", terminate_grace)
    check_seconds("drain_timeout", drain_timeout)
    if isinstance(tail_lines, bool) or not isinstance(tail_lines, int) or tail_lines < 0:
        raise ConfigurationError(f"tail_lines must be an int >= 0, got {tail_lines!r}")
    codecs.lookup(encoding)  # LookupError now, not in the middle of the run
    return await _run(
        argv,
        _line_callback(on_line),
        timeout,
        cwd,
        env,
        merge_stderr,
        terminate_grace,
        drain_timeout,
        tail_lines,
        encoding,
        errors,
        None,
    )


async def _run(
    argv: tuple[str, ...],
    on_line: LineCallback | None,
    timeout: float | None,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    merge_stderr: bool,
    terminate_grace: float,
    drain_timeout: float,
    tail_lines: int,
    encoding: str,
    errors: str,
    on_spawn: Callable[[int], object] | None,
) -> ProcessResult:
    """:func:`run_process` once its arguments are checked; ``on_spawn(pid)`` for the job."""
    tail: deque[str] = deque(maxlen=tail_lines)
    stderr_tail: deque[str] = deque(maxlen=tail_lines)

    def emit(text: str, stream: str) -> None:
        tail.append(text)
        if stream == "stderr":
            stderr_tail.append(text)
        if on_line is not None:
            try:
                on_line(text, stream)
            except Exception as exc:  # a faulty slot never stops the process or the read
                report_callback_exception("an on_line callback", exc)

    spawn: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        "cwd": cwd,
        "env": dict(env) if env is not None else None,
    }
    if sys.platform == "win32":  # pragma: no cover - Windows only
        spawn["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        spawn["start_new_session"] = True  # its own process group: the tree can be killed
    began = time.monotonic()
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    transport, protocol = await loop.subprocess_exec(
        lambda: _ProcessProtocol(loop, emit, encoding, errors, merge_stderr), *argv, **spawn
    )
    pid = transport.get_pid()
    with _live_lock:
        _live_trees.add(pid)
    if on_spawn is not None:
        on_spawn(pid)
    timed_out = False
    try:
        try:
            async with asyncio.timeout_at(deadline):
                # asyncio.wait never cancels the futures it waits for: the stop sequence
                # below can still wait on protocol.exited after a cancellation.
                await asyncio.wait([protocol.exited])
                await asyncio.wait([protocol.pipes_closed], timeout=drain_timeout)
        except TimeoutError:
            timed_out = True
            await _stop_tree(transport, protocol, terminate_grace)
            await asyncio.wait([protocol.pipes_closed], timeout=drain_timeout)
    except BaseException:
        # Cancelled (or worse): the tree goes down before the exception leaves.
        await _stop_tree(transport, protocol, terminate_grace)
        raise
    finally:
        protocol.flush_all()
        # A grandchild may still hold the pipes: close our ends now rather than at GC.
        transport.close()
        with _live_lock:
            _live_trees.discard(pid)
    returncode = transport.get_returncode()
    assert returncode is not None
    return ProcessResult(
        argv, returncode, tuple(tail), tuple(stderr_tail), timed_out, time.monotonic() - began
    )


async def _stop_tree(
    transport: asyncio.SubprocessTransport, protocol: _ProcessProtocol, grace: float
) -> None:
    """Terminate the child's process tree, then kill it after ``grace`` seconds."""
    pid = transport.get_pid()
    try:
        if not protocol.exited.done():
            _signal_tree(pid, force=False)
            await asyncio.wait([protocol.exited], timeout=grace)
    finally:
        # Always, even if the child exited in time or we are cancelled again: the rest of
        # the tree may have ignored SIGTERM or outlived the child.
        _signal_tree(pid, force=True)
    await asyncio.wait([protocol.exited])


# The children (process group leaders) of run_process calls in flight, for the exit hook.
_live_trees: set[int] = set()
_live_lock = threading.Lock()


def _kill_live_trees() -> None:
    """Kill the tree of every run still in flight (at interpreter exit; see the docstring).

    The package imports ``_loopthread`` first, so this hook runs before its exit hook
    (atexit is LIFO): a ``LoopThread`` closed at exit then finds the children of its
    runs gone instead of waiting out their ``terminate_grace``.
    """
    with _live_lock:
        pids = list(_live_trees)
        _live_trees.clear()
    for pid in pids:
        _signal_tree(pid, force=True)


atexit.register(_kill_live_trees)


def _signal_tree(pid: int, *, force: bool) -> None:
    if _WINDOWS:  # pragma: no cover - exercised on Windows only
        args = ["taskkill", "/T", "/PID", str(pid)] + (["/F"] if force else [])
        subprocess.run(args, capture_output=True, check=False)
        return
    sig = signal.SIGKILL if force else signal.SIGTERM
    try:
        # The child leads its own session, so its pid is the process group's id.
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):  # the whole group is already gone
        pass


# -- the job -------------------------------------------------------------------------------


class _LinePump:
    """Moves lines from the job thread to the GUI thread in order, in bounded batches.

    A plain object (no Shiboken attribute access per line); one engine wake-up per batch.
    """

    __slots__ = ("_emit", "_engine", "_lines", "_posted")

    def __init__(self, engine: DeliveryEngine, emit: Callable[[str, str], None]) -> None:
        self._engine = engine
        # A weak method: job -> pump -> bound method -> job would be a reference cycle,
        # and a QObject in a cycle is freed by the cyclic GC on whatever thread happens
        # to run it (a pool thread, the job thread): a QObject deleted off its own
        # thread while the GUI thread dispatches an event to it is a segfault.
        self._emit = weakref.WeakMethod(emit)
        self._lines: deque[tuple[str, str]] = deque()
        self._posted = False

    def push(self, text: str, stream: str) -> None:
        """Queue one line (job thread)."""
        self._lines.append((text, stream))
        if not self._posted:
            self._posted = True
            self._engine.post(self.drain)

    def drain(self, limit: int | None = _LINES_PER_DELIVERY) -> None:
        """Emit queued lines (GUI thread); re-post itself if more are left."""
        self._posted = False
        lines = self._lines
        emit = self._emit()
        if emit is None:  # the job is gone: nobody can receive its lines
            lines.clear()
            return
        count = 0
        while lines and (limit is None or count < limit):
            text, stream = lines.popleft()
            emit(text, stream)
            count += 1
        if lines and not self._posted:
            self._posted = True
            self._engine.post(self.drain)


class SubprocessJob(LongJob[ProcessResult]):
    """A long job that runs a command and emits each output line on the GUI thread.

    Ends with ``result(ProcessResult)`` (exit code, tail, ``timed_out``), ``error`` if
    the command could not run (``FileNotFoundError``, ...), or ``cancelled`` after the
    process tree was stopped.  All ``line`` signals arrive before the outcome.  From a
    coroutine, ``await asyncio.wrap_future(job.future)``, or call :func:`run_process`
    directly.

    Signals:
        line(str, str): ``(text, stream)``, one per output line, in order; ``stream``
            is ``"stdout"`` or ``"stderr"`` (``"stdout"`` when merged).  A slot that
            takes the text only (``log.appendPlainText``) can be connected directly.

    :attr:`pid` is the child's process id once it has started.

    Args:
        command: The program and its arguments (no shell).
        timeout: Overall seconds for the command; None: no limit.
        cwd: Working directory.
        env: The child's environment (default: inherited).
        merge_stderr: One stream (True) or two.
        terminate_grace: Seconds between SIGTERM and SIGKILL when stopping.
        tail_lines: Lines kept in the result.
        encoding: How output is decoded (undecodable bytes are replaced).
        owner: See :class:`~casare_workers.LongJob`: when it is destroyed, or its
            window is closed (a dialog rejected with Esc included), the process tree
            is stopped.
        key: See :class:`~casare_workers.LongJob`.
        name: Display name (default: the program's file name).
        manager: See :class:`~casare_workers.LongJob`.

    Example:
        >>> job = SubprocessJob([sys.executable, "-m", "pip", "install", "-U", "pip"],
        ...                     timeout=600, owner=dialog)            # doctest: +SKIP
        >>> job.line.connect(dialog.log.appendPlainText)              # doctest: +SKIP
        >>> job.result.connect(dialog.show_outcome)                   # doctest: +SKIP
        >>> job.start()                                               # doctest: +SKIP
    """

    line = Signal(str, str)

    def __init__(
        self,
        command: Sequence[str | os.PathLike[str]],
        *,
        timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        merge_stderr: bool = True,
        terminate_grace: float = DEFAULT_TERMINATE_GRACE,
        tail_lines: int = DEFAULT_TAIL_LINES,
        encoding: str = "utf-8",
        owner: QObject | None = None,
        key: Hashable | None = None,
        name: str | None = None,
        manager: WorkerManager | None = None,
    ) -> None:
        argv = _check_command(command)
        check_seconds("timeout", timeout, allow_none=True)
        check_seconds("terminate_grace", terminate_grace)
        if isinstance(tail_lines, bool) or not isinstance(tail_lines, int) or tail_lines < 0:
            raise ConfigurationError(f"tail_lines must be an int >= 0, got {tail_lines!r}")
        codecs.lookup(encoding)
        super().__init__(
            owner=owner,
            key=key,
            name=name if name is not None else os.path.basename(argv[0]),
            manager=manager,
        )
        self.command = argv
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "cwd": cwd,
            "env": env,
            "merge_stderr": merge_stderr,
            "terminate_grace": terminate_grace,
            "tail_lines": tail_lines,
            "encoding": encoding,
        }
        self._pump = _LinePump(self._engine, self._emit_line)
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id once it has started (None before).  Any thread.

        It stays set after the child has ended (the OS may then give the number to
        another process).  The child leads its own process group (``start_new_session``),
        so on POSIX ``os.killpg(job.pid, ...)`` reaches its whole tree.
        """
        return self._pid

    async def work(self, ctx: JobContext) -> ProcessResult:
        """Run the command on the job's loop (job thread)."""
        options = self._options
        return await _run(
            self.command,
            self._pump.push,
            options["timeout"],
            options["cwd"],
            options["env"],
            options["merge_stderr"],
            options["terminate_grace"],
            DEFAULT_DRAIN_TIMEOUT,
            options["tail_lines"],
            options["encoding"],
            "replace",
            self._spawned,
        )

    def _spawned(self, pid: int) -> None:
        self._pid = pid  # job thread; one attribute store, atomic under the GIL

    def _emit_line(self, text: str, stream: str) -> None:
        # GUI thread.  Nothing reaches a dead owner (the same rule as the job's signals).
        if self._core.owner_alive():
            self.line.emit(text, stream)

    def _before_outcome(self) -> None:
        self._pump.drain(limit=None)  # every line before result/error/cancelled
