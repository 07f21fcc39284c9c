"""``TaskContext``: what a running function sees of its task.

One contract for every kind of work: a function that declares ``ctx`` gets an object with
``progress``, ``status``, ``cancelled``, ``raise_if_cancelled``, ``wait``, ``task_id`` and
``name``, whether it runs on a thread (this class, over a ``TaskHandle``), in a long job
(``JobContext``, a subclass), in a worker process or on a Dask worker (their own classes
with the same methods, ``casare_workers._pools``).  The source a context reads from
provides :class:`ContextSource`.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, cast

from .._errors import TaskCancelledError

__all__ = ("ContextSource", "ProgressCallback", "TaskContext", "coerce_progress")


class ContextSource(Protocol):
    """What a context needs from the work it belongs to (a task, a long job)."""

    id: int
    name: str

    def report_progress(self, current: int, total: int) -> None:
        """Record progress (latest value wins; delivered within a frame).  Any thread."""

    def report_status(self, text: str) -> None:
        """Record a status text, coalesced like progress.  Any thread."""

    @property
    def stop_requested(self) -> bool:
        """True once the work should stop (cancelled, timed out, shut down, orphaned)."""

    def cancel_event(self) -> threading.Event:
        """An event set when a stop is requested (made on first use)."""


class TaskContext:
    """The object a task function receives when it declares a parameter named ``ctx``.

    Every method is cheap and may be called from the worker thread as often as wanted:
    progress is coalesced (latest value wins, at most one GUI update per frame).

    Example:
        >>> def copy_files(paths, ctx):
        ...     for i, path in enumerate(paths):
        ...         ctx.raise_if_cancelled()
        ...         ctx.status(f"copying {path}")
        ...         shutil.copy(path, backup_dir)
        ...         ctx.progress(i + 1, len(paths))
    """

    __slots__ = ("_source",)

    def __init__(self, source: ContextSource) -> None:
        self._source = source

    def progress(self, current: int, total: int = 0) -> None:
        """Report progress ``current`` of ``total`` (``total <= 0``: unknown).  Any thread."""
        if current.__class__ is not int or total.__class__ is not int:
            current, total = coerce_progress(current, total)
        self._source.report_progress(current, total)

    def status(self, text: str) -> None:
        """Report a short status text (coalesced like progress).  Any thread."""
        self._source.report_status(str(text))

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, superseded, timed out, shut down or orphaned.

        "Orphaned" means its owner QObject was destroyed.
        """
        return self._source.stop_requested

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelledError`` if :attr:`cancelled`; the task then ends cancelled."""
        if self._source.stop_requested:
            raise TaskCancelledError(f"task {self._source.name!r} was cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancellation.

        Returns:
            True if the task was cancelled (stop now), False if the time ran out.
        """
        source = self._source
        if source.stop_requested:
            return True
        return source.cancel_event().wait(timeout) or source.stop_requested

    @property
    def task_id(self) -> int:
        """The id of the running task."""
        return self._source.id

    @property
    def name(self) -> str:
        """The name of the running task."""
        return self._source.name


def coerce_progress(current: object, total: object) -> tuple[int, int]:
    """``(int(current), int(total))``, or the TypeError that names what was passed."""
    try:
        return int(cast(Any, current)), int(cast(Any, total))
    except (TypeError, ValueError):
        raise TypeError(
            f"ctx.progress(current, total) takes two integers, got {current!r} and {total!r}"
        ) from None


class ProgressCallback:
    """The tutorial's ``progress_callback`` argument: ``.emit(n)`` or ``(n)``."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx

    def emit(self, current: int, total: int = 100) -> None:
        """Report progress like the tutorial's ``progress_callback.emit(percent)``."""
        self._ctx.progress(current, total)

    __call__ = emit
