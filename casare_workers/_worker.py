"""``Worker``: the ``QRunnable`` + ``WorkerSignals`` pattern every PySide user knows, done right.

Differences from the tutorial pattern, all invisible at the call site:

* the signals are emitted on the GUI thread by the delivery engine (batched), never from
  the pool thread, so slots, lambdas and closures run where widgets live;
* the signals object is owned by the task handle, not by the runnable: Qt deletes an
  auto-deleted runnable on the pool thread (and, with it, the last reference to a
  fire-and-forget ``Worker``), but the handle drops the signals on the GUI thread right
  after ``finished`` is delivered, so a QObject is never destroyed on the wrong thread;
* ``finished`` always comes last, after exactly one of ``result``/``error``/``cancelled``;
* cancellation, progress coalescing and a ``ctx`` argument, as for ``manager.submit``;
* a subclass gets its data the natural way: the constructor's arguments go to ``work()``;
* an ``owner`` of its own, also on a plain ``QThreadPool`` (the manager is not needed).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from PySide6.QtCore import QObject, QRunnable

from ._closing import watch_window
from ._core._call import name_of
from ._core._context import TaskContext
from ._core._handle import TaskHandle
from ._core._state import TaskState
from ._engine import get_engine
from ._introspect import WANTS_CTX, WANTS_PROGRESS_CALLBACK, call_mode
from ._owners import OwnerRecord, check_owner
from ._signals import WorkerSignals

__all__ = ("Worker",)

logger = logging.getLogger("casare_workers")

T = TypeVar("T")


class Worker(QRunnable, Generic[T]):
    """A unit of work for a ``QThreadPool`` or a ``WorkerManager``.

    Two forms:

    * a function: ``Worker(fn, *args, **kwargs)`` runs ``fn(*args, **kwargs)``;
    * a subclass that overrides :meth:`work`: every argument of the constructor goes to
      ``work``, so ``Export(rows)`` runs ``work(rows, ctx)``.  A subclass that prefers
      attributes takes its data in its own ``__init__`` and calls ``super().__init__()``
      without arguments.  Arguments ``work`` cannot take fail here, at construction.

    A function or ``work`` that declares a ``ctx`` parameter receives a
    :class:`TaskContext`; one that declares ``progress_callback`` receives an object
    with ``.emit(value)`` (the tutorial's convention), for drop-in migration.

    Start it with ``manager.start(worker)`` (named pools, owner, key, timeout) or hand it
    to any ``QThreadPool``: ``QThreadPool.globalInstance().start(worker)``.  Either way
    its ``signals`` are emitted on the GUI thread.  On a plain ``QThreadPool``, give it
    an :attr:`owner` of its own.  A worker runs once.

    Example:
        >>> class Export(Worker):                                # doctest: +SKIP
        ...     def work(self, rows, ctx):
        ...         for i, row in enumerate(rows):
        ...             ctx.raise_if_cancelled()
        ...             write(row)
        ...             ctx.progress(i + 1, len(rows))
        ...         return len(rows)
        >>> worker = Export(rows)                                # doctest: +SKIP
        >>> worker.signals.progress.connect(to_percent(self.bar.setValue))  # doctest: +SKIP
        >>> worker.signals.result.connect(self.show_count)       # doctest: +SKIP
        >>> manager.start(worker)                                # doctest: +SKIP

        Function form: ``Worker(load_image, path)``.
    """

    @overload
    def __init__(self: Worker[T], fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> None: ...

    @overload
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        cls = type(self)
        if cls.work is not Worker.work:
            # The subclass form: the constructor's arguments are work()'s.
            _check_work_arguments(cls, args, kwargs)
            target: Callable[..., T] = self.work
            name = cls.__qualname__
        else:
            if not args:
                raise TypeError(
                    "Worker needs a function to run: Worker(fn, *args, **kwargs), "
                    "or subclass Worker and override work()"
                )
            fn, args = args[0], args[1:]
            if not callable(fn):
                raise TypeError(
                    f"Worker(fn, ...) expects a callable first, got {fn!r} ({type(fn).__name__}); "
                    "to pass data to a subclass, override work() and declare it there"
                )
            target = fn
            name = name_of(fn)
        # The signals object is the handle's, made on first use of ``worker.signals``
        # (a QObject costs ~15 µs, most of a Worker's construction, and a worker whose
        # signals nobody connects needs none); the runnable holds no reference of its
        # own to it: see the module doc.
        #: The handle of this worker's task (state, cancel, result, then()).
        self.handle: TaskHandle[T] = TaskHandle(target, args, kwargs, get_engine(), name)
        self._close_listener: _CancelOnClose | None = None

    @property
    def owner(self) -> QObject | None:
        """The QObject this worker belongs to while it is alive, or None.

        Set it before starting the worker, on any pool (``QThreadPool.globalInstance()``
        included): when the owner is destroyed, or its window is closed, the worker is
        cancelled (``ctx.cancelled`` turns True; a queued worker never runs), and once
        it is destroyed nothing is delivered to it any more.  The worker holds a record
        of the owner, never a reference.  ``manager.start(worker)`` keeps this owner.

        Raises:
            TypeError: The owner is not a QObject.
            ValueError: The owner has already been destroyed.
            AlreadyStartedError: The worker was started or has ended.
        """
        record = self.handle.owner_record
        return record.get() if record is not None else None

    @owner.setter
    def owner(self, owner: QObject | None) -> None:
        handle = self.handle
        handle.check_unstarted()
        if owner is None:
            handle.set_owner(None)
            self._close_listener = None
            return
        check_owner(owner)
        task_ref = weakref.ref(handle)
        engine = handle.engine

        def owner_died(_record: OwnerRecord) -> None:
            # Inside the owner's destructor: no lock, no work here (see _owners).
            engine.post(lambda: _cancel(task_ref, "owner destroyed"))

        handle.set_owner(OwnerRecord(owner, owner_died))
        listener = self._close_listener = _CancelOnClose(task_ref)
        watch_window(owner, listener)

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
        self.handle.execute()

    def cancel(self) -> bool:
        """Cancel the worker (see :meth:`TaskHandle.cancel`)."""
        return self.handle.cancel()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.handle!r}>"


class _CancelOnClose:
    """Cancels a worker's task when its owner's window is closed (``_closing``)."""

    __slots__ = ("__weakref__", "_task")

    def __init__(self, task: weakref.ref[TaskHandle[Any]]) -> None:
        self._task = task

    def window_closed(self, reason: str) -> None:
        """Runs on the GUI thread."""
        _cancel(self._task, "window closed")


def _cancel(task_ref: weakref.ref[TaskHandle[Any]], reason: str) -> None:
    task = task_ref()
    if task is not None:
        task.cancel(reason=reason)


# Per Worker subclass: the signature of its work(), for the construction-time check.
_work_signatures: dict[type, inspect.Signature] = {}


def _check_work_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse, at construction, arguments the subclass's ``work()`` cannot take.

    Otherwise the mistake would surface on a worker thread, as the task's error, far
    from the line that made it.
    """
    signature = _work_signatures.get(cls)
    if signature is None:
        try:
            signature = inspect.signature(cls.work)  # type: ignore[attr-defined]
        except (TypeError, ValueError):  # no signature to check against
            return
        _work_signatures[cls] = signature
    mode = call_mode(cls.work)  # type: ignore[attr-defined]
    given = {WANTS_CTX: "ctx", WANTS_PROGRESS_CALLBACK: "progress_callback"}.get(mode)
    name = cls.__qualname__
    if given is not None and given in kwargs:
        raise TypeError(
            f"{name}.work() declares {given!r}: the worker passes it, do not pass it yourself"
        )
    extra = {given: None} if given is not None else {}
    try:
        signature.bind(None, *args, **kwargs, **extra)
    except TypeError as exc:
        raise TypeError(
            f"{name}(...) passes its arguments to {name}.work(), which cannot take them "
            f"({exc}): declare them as parameters of work (def work(self, rows, ctx)), "
            "or take them in your own __init__ and call super().__init__() without arguments"
        ) from None
