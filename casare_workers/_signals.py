"""``WorkerSignals``: the QObject a task's events are emitted from, on the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

__all__ = ("WorkerSignals",)


class WorkerSignals(QObject):
    """The signals of one task, always emitted on the GUI thread.

    Order per task: ``started`` (if it ran), any number of ``progress``/``status``,
    then exactly one of ``result``/``error``/``cancelled``, then ``finished``, exactly
    once.  Because they are emitted on the GUI thread, slots, lambdas and closures all
    run there, whatever thread the work ran on.

    Signals:
        started(): the task began running on a worker thread.
        progress(int, int): ``(current, total)``; ``total <= 0`` means unknown.  Coalesced:
            at most one per frame (~16 ms), and the last value always arrives before
            ``finished``.
        status(str): the latest status text, coalesced like ``progress``.
        result(object): the function's return value.
        error(object): a :class:`~casare_workers.TaskError` with the exception and its
            formatted traceback.
        cancelled(): the task was cancelled, superseded or shut down.
        finished(): always last, exactly once.

    Example:
        >>> handle = manager.submit(download, url)          # doctest: +SKIP
        >>> handle.signals.result.connect(self.show_page)  # doctest: +SKIP
    """

    started = Signal()
    # qint64, not int: Signal(int, int) overflows at 2**31 (byte counts of a download).
    progress = Signal("qint64", "qint64")  # type: ignore[arg-type]
    status = Signal(str)
    result = Signal(object)
    error = Signal(object)
    cancelled = Signal()
    finished = Signal()
