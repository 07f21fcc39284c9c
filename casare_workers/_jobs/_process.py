"""``run_process``: run a command, stream its lines, stop the whole process tree.

Two forms over one implementation, :func:`run_command`:

* :func:`run_process`, a coroutine for callers inside coroutines (a qasync slot, a
  ``LongJob``'s async work, a ``LoopThread`` call): it runs on the caller's loop and
  calls ``on_line`` there;
* ``SubprocessJob`` (``_subprocess``), a ``LongJob`` whose async work is
  ``run_command`` on the job's own loop; each line is emitted on the GUI thread as
  ``line(text, stream)``, before the outcome.

How output becomes lines is ``_lines``.

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
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigurationError
from .._report import report_callback_exception
from .._validation import check_seconds
from ._lines import LineCallback, OnLine, ProcessProtocol, line_callback

__all__ = (
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_TAIL_LINES",
    "DEFAULT_TERMINATE_GRACE",
    "ProcessResult",
    "check_command",
    "run_command",
    "run_process",
)

#: Lines kept for :attr:`ProcessResult.output_tail` by default.
DEFAULT_TAIL_LINES = 50
#: Seconds a child gets between SIGTERM and SIGKILL by default.
DEFAULT_TERMINATE_GRACE = 3.0
#: Seconds to read the output left in the pipes once the child has exited.  A
#: grandchild that inherited the pipes can keep them open for ever; it must not hold us.
DEFAULT_DRAIN_TIMEOUT = 1.0

_WINDOWS = sys.platform == "win32"


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


def check_command(command: object) -> tuple[str, ...]:
    """The command as a tuple of strings, or the TypeError that says how to pass it."""
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
    argv = check_command(command)
    check_seconds("timeout", timeout, allow_none=True)
    check_seconds("terminate_grace", terminate_grace)
    check_seconds("drain_timeout", drain_timeout)
    if isinstance(tail_lines, bool) or not isinstance(tail_lines, int) or tail_lines < 0:
        raise ConfigurationError(f"tail_lines must be an int >= 0, got {tail_lines!r}")
    codecs.lookup(encoding)  # LookupError now, not in the middle of the run
    return await run_command(
        argv,
        line_callback(on_line),
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


async def run_command(
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
        lambda: ProcessProtocol(loop, emit, encoding, errors, merge_stderr), *argv, **spawn
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
    transport: asyncio.SubprocessTransport, protocol: ProcessProtocol, grace: float
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

    The package imports ``_loopthread`` (whose ``_loopserver`` registers the loop
    threads' exit hook) before this module, so this hook runs first (atexit is LIFO): a
    ``LoopThread`` closed at exit then finds the children of its runs gone instead of
    waiting out their ``terminate_grace``.
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
