"""``JobContext``: what a long job's work sees of its job (a ``TaskContext`` plus pauses)."""

from __future__ import annotations

import asyncio
from typing import cast

from .._core._context import TaskContext
from .._errors import TaskCancelledError
from ._jobcore import JobCore

__all__ = ("JobContext",)


class JobContext(TaskContext):
    """The ``ctx`` a :class:`LongJob`'s work receives.

    It is a :class:`~casare_workers.TaskContext` (``progress``, ``status``,
    ``cancelled``, ``raise_if_cancelled``, ``wait``): code written for pool tasks runs in
    a job unchanged.  It adds pause checkpoints.

    Example:
        >>> class Export(LongJob):
        ...     def work(self, ctx):
        ...         for i, row in enumerate(rows):
        ...             ctx.checkpoint()  # stops here if cancelled, waits here if paused
        ...             write(row)
        ...             ctx.progress(i + 1, len(rows))
    """

    __slots__ = ()

    def __init__(self, core: JobCore) -> None:
        super().__init__(core)

    @property
    def _core(self) -> JobCore:
        return cast(JobCore, self._source)

    @property
    def paused(self) -> bool:
        """True while the job is asked to pause."""
        return self._core.paused

    def checkpoint(self) -> None:
        """Raise if cancelled; block while paused (waking on resume or cancel).  Job thread.

        Raises:
            TaskCancelledError: The job was cancelled (before or during the pause).
        """
        self._core.wait_while_paused()
        self.raise_if_cancelled()

    def point_of_no_return(self) -> None:
        """Make the job uncancellable from here on, or raise if it is already cancelled.

        For work whose last steps must not be abandoned half-way (a commit): after this
        returns, ``cancel()`` has no effect and the work's return value is delivered as
        the result.  A job cancelled before this point raises here (undo what needs
        undoing, then let the exception propagate).

        Raises:
            TaskCancelledError: The job was cancelled before this point.
        """
        core = self._core
        if not core.commit():
            raise TaskCancelledError(f"long job {core.name!r} was cancelled")

    async def acheckpoint(self) -> None:
        """The ``await``-able :meth:`checkpoint` for async work: pauses without blocking the loop.

        Raises:
            TaskCancelledError: The job was cancelled.
        """
        core = self._core
        loop = asyncio.get_running_loop()
        while (resumed := core.resumed(loop)) is not None:
            await resumed  # resolved by resume() or cancel(), from any thread
        self.raise_if_cancelled()
