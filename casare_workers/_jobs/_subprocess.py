"""``SubprocessJob``: a long job that runs a command and streams its lines to the GUI.

Its async work is :func:`~casare_workers._jobs._process.run_command` on the job's own
loop; each output line crosses to the GUI thread in bounded batches and is emitted as
``line(text, stream)``, every one before the outcome::

    job thread (the job's loop)                  GUI thread
    ---------------------------                  ----------
    run_command ─ on_line ─► LinePump.push ────► drain(): line(text, stream) x <= 256,
                                                   re-posted while lines are left
    the command ends: result | error | cancelled
                                                 finished ─► _before_outcome: drain all,
                                                   then result | error | cancelled
"""

from __future__ import annotations

import codecs
import os
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from .._engine import DeliveryEngine
from .._errors import ConfigurationError
from .._manager import WorkerManager
from .._validation import check_seconds
from ._context import JobContext
from ._longjob import LongJob
from ._process import (
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_TAIL_LINES,
    DEFAULT_TERMINATE_GRACE,
    ProcessResult,
    check_command,
    run_command,
)

__all__ = ("SubprocessJob",)

#: Lines emitted per delivery before the GUI thread gets to do something else.
_LINES_PER_DELIVERY = 256


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
        argv = check_command(command)
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
        return await run_command(
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
