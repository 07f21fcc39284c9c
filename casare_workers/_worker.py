"""``Worker``: the ``QRunnable`` + ``WorkerSignals`` pattern every PySide user knows, done right.

Differences from the tutorial pattern, all invisible at the call site:

* the signals are emitted on the GUI thread by the delivery engine (batched), never from
  the pool thread, so slots, lambdas and closures run where widgets live;
* the signals object is owned by the task handle, not by the runnable: Qt deletes an
  auto-deleted runnable on the pool thread (and, with it, the last reference to a
  fire-and-forget ``Worker``), but the handle drops the signals on the GUI thread right
  after ``finished`` is delivered, so a QObject is never destroyed on the wrong thread;
* ``finished`` always comes last, after exactly one of ``result``/``error``/``cancelled``;
* cancellation, progress coalescing and a ``ctx`` argument, as for ``manager.submit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QRunnable

from ._engine import get_engine
from ._signals import WorkerSignals
from ._state import TaskState
from ._task import TaskContext, TaskHandle, _name_of

__all__ = ("Worker",)

logger = logging.getLogger("casare_workers")

T = TypeVar("T")


class Worker(QRunnable, Generic[T]):
    """A unit of work for a ``QThreadPool`` or a ``WorkerManager``.

    Pass a function (``Worker(fn, *args, **kwargs)``) or subclass and override
    :meth:`work`.  A function or ``work`` that declares a ``ctx`` parameter receives a
    :class:`TaskContext`; one that declares ``progress_callback`` receives an object with
    ``.emit(value)`` (the tutorial's convention), for drop-in migration.

    Start it with ``manager.start(worker)`` (named pools, owner, key, timeout) or hand it
    to any ``QThreadPool``: ``QThreadPool.globalInstance().start(worker)``.  Either way
    its ``signals`` are emitted on the GUI thread.  A worker runs once.

    Example:
        >>> worker = Worker(load_image, path)                    # doctest: +SKIP
        >>> worker.signals.result.connect(self.label.setPixmap)  # doctest: +SKIP
        >>> worker.signals.progress.connect(self.bar.setValue)   # doctest: +SKIP
        >>> manager.start(worker)                                # doctest: +SKIP

        Subclass form::

            class Export(Worker):
                def work(self, ctx):
                    for i, row in enumerate(rows):
                        ctx.raise_if_cancelled()
                        write(row)
                        ctx.progress(i + 1, len(rows))
                    return len(rows)
    """

    def __init__(self, fn: Callable[..., T] | None = None, /, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if fn is None:
            if type(self).work is Worker.work:
                raise TypeError(
                    "Worker needs a function to run: Worker(fn, *args, **kwargs), "
                    "or subclass Worker and override work()"
                )
            target: Callable[..., T] = self.work
            name = type(self).__qualname__
        else:
            if not callable(fn):
                raise TypeError(
                    f"Worker(fn, ...) expects a callable first, got {fn!r} ({type(fn).__name__})"
                )
            target = fn
            name = _name_of(fn)
        engine = get_engine()
        signals = WorkerSignals()
        if not engine.is_gui_thread():
            # Emitted from the GUI thread; its slots' default connection type follows.
            signals.moveToThread(engine.thread())
        # The runnable holds no reference of its own to the signals: see the module doc.
        #: The handle of this worker's task (state, cancel, result, then()).
        self.handle: TaskHandle[T] = TaskHandle(target, args, kwargs, engine, name, signals)

    @property
    def signals(self) -> WorkerSignals:
        """The task's signals, emitted on the GUI thread (:attr:`TaskHandle.signals`).

        Connect before starting the worker.  After ``finished`` has been delivered the
        object is released (on the GUI thread) and this returns a fresh one that never
        emits.
        """
        return self.handle.signals

    def work(self, *args: Any, **kwargs: Any) -> T:
        """Override in a subclass to do the work (runs on a worker thread)."""
        raise NotImplementedError  # pragma: no cover - replaced by subclasses

    @property
    def ctx(self) -> TaskContext:
        """A :class:`TaskContext` for this worker, for ``work`` methods that want one."""
        return TaskContext(self.handle)

    def run(self) -> None:
        """Run the task now on the calling thread.  ``QThreadPool`` calls this."""
        if self.handle.state is not TaskState.PENDING:
            if self.handle.state is not TaskState.CANCELLED:
                logger.error(
                    "Worker %r was started twice; a Worker runs once (create a new one)",
                    self.handle.name,
                )
            return
        self.handle._pool_run()

    def cancel(self) -> bool:
        """Cancel the worker (see :meth:`TaskHandle.cancel`)."""
        return self.handle.cancel()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.handle!r}>"
