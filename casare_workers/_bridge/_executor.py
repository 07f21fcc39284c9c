"""A manager pool as an asyncio loop's default executor.

:class:`PoolExecutor` is a ``concurrent.futures`` view of one manager pool (it starts no
thread of its own); :func:`attach_loop` installs one as a loop's default executor, so
``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)`` run on the manager's
bounded pool and stop with it::

    asyncio.to_thread(fn, ...) ─► loop.run_in_executor(None, ...)
      ─► PoolExecutor.submit(fn, ...) ─► a plain manager task (no ctx injection)
      ◄─ its concurrent.futures.Future, wrapped by the loop
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._core._call import name_of
from .._core._handle import TaskHandle
from .._core._state import TaskState
from .._introspect import PLAIN
from ._host import ExecutorHost, host_of
from ._loops import register_gui_loop, running_loop

if TYPE_CHECKING:
    from .._manager import TaskOptions, WorkerManager

__all__ = ("PoolExecutor", "attach_loop")

logger = logging.getLogger("casare_workers")

T = TypeVar("T")

_QUEUED = TaskState.QUEUED


def _submit_plain(
    host: ExecutorHost, opts: TaskOptions, fn: Callable[..., T], args: Any, kwargs: Any
) -> TaskHandle[T]:
    """Submit ``fn(*args, **kwargs)`` exactly as given (no ``ctx`` injection).

    An executor's contract is to call the function with the arguments it was given; a
    third-party function that happens to declare ``ctx`` must not receive a TaskContext.
    """
    if not callable(fn):
        raise TypeError(f"submit() expects a callable, got {fn!r} ({type(fn).__name__})")
    host.check_open()
    pool = host.pool(opts.pool)
    task: TaskHandle[T] = TaskHandle(fn, args, kwargs, host.engine, name_of(fn), mode=PLAIN)
    host.enqueue(task, pool, opts, pool.submit)
    return task


class PoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ``concurrent.futures`` executor that runs on one of a manager's pools.

    Make it an asyncio loop's default executor (:func:`attach_loop` does) and
    ``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)`` run on the manager's
    bounded pool instead of qasync's own QThreads (which are joined at loop close with
    no limit and abort the process if destroyed while running) or a second, unbounded
    pool.

    It is a view, not a pool: it starts no thread of its own.  It subclasses
    ``ThreadPoolExecutor`` only because ``loop.set_default_executor`` accepts nothing
    else; every method of that class is replaced.

    ``shutdown(wait=True)`` waits at most the manager's ``shutdown_timeout`` for the
    work submitted through this executor, then cancels what is left (a Python thread
    cannot be killed: a stuck function runs on, on a daemon thread that does not hold
    the process's exit).  Shutting the manager down stops this executor too.

    Functions are called exactly as given (a parameter named ``ctx`` receives no
    :class:`TaskContext`).  Like every manager task they run in a copy of the
    submitter's contextvars (plain ``run_in_executor`` does not copy them).

    Example:
        >>> executor = PoolExecutor(manager, "io")                        # doctest: +SKIP
        >>> future = executor.submit(read_file, path)   # a concurrent Future  # doctest: +SKIP
        >>> data = await loop.run_in_executor(executor, read_file, path)  # doctest: +SKIP
    """

    def __init__(self, manager: WorkerManager, pool: str = "io") -> None:
        host, options = host_of(manager, pool)  # UnknownPoolError names the pools
        # No thread is ever started by the base class: its submit() is replaced.
        super().__init__(
            max_workers=host.pool(pool).max_workers, thread_name_prefix=f"casare-{pool}"
        )
        self._host = host
        self._options = options
        self._tasks: set[TaskHandle[Any]] = set()
        self._closed = False
        self._guard = threading.Lock()
        self._replaced: object = None  # a previous default executor kept alive (attach_loop)

    @property
    def pool(self) -> str:
        """The name of the manager pool this executor submits to."""
        return self._options.pool

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on the pool; return its ``concurrent.futures.Future``.

        Cancelling the Future cancels the task (queued: removed; running: it ends
        cancelled at once).  Thread-safe.

        Raises:
            RuntimeError: After :meth:`shutdown` (as ``ThreadPoolExecutor`` does).
            ManagerShutdownError: After the manager was shut down.
        """
        with self._guard:
            if self._closed:
                raise RuntimeError(
                    "cannot schedule new futures after shutdown (this PoolExecutor was shut "
                    "down; the manager's pools may still be open)"
                )
        task = _submit_plain(self._host, self._options, fn, args, kwargs)
        future = task.future
        with self._guard:
            self._tasks.add(task)
        task.add_done_callback(self._forget)
        return future

    def _forget(self, task: TaskHandle[Any]) -> None:
        with self._guard:
            self._tasks.discard(task)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; optionally cancel queued work; wait a bounded time.

        Args:
            wait: Wait for the work submitted through this executor, at most the
                manager's ``shutdown_timeout``; what is still running then is cancelled
                and logged.  Never an unbounded join.
            cancel_futures: Cancel work that has not started yet.
        """
        with self._guard:
            self._closed = True
            tasks = list(self._tasks)
        if cancel_futures:
            for task in tasks:
                if task.state is _QUEUED:
                    task.cancel(reason="executor shut down")
        if not wait:
            return
        # On the application's way out (the loop closing after aboutToQuit) this wait and
        # the manager's own at exit share one deadline: see ManagerCore.quit_deadline.
        deadline = self._host.quit_deadline()
        for task in tasks:
            if not task.wait(max(0.0, deadline - time.monotonic())):
                break
        left = [task for task in tasks if not task.done()]
        for task in left:
            task.cancel(reason="executor shut down")
        if left:
            logger.warning(
                "PoolExecutor(%r).shutdown: %d function(s) still running after %.1f s were "
                "cancelled and left to finish on daemon threads: %s",
                self.pool,
                len(left),
                self._host.shutdown_timeout,
                ", ".join(task.name for task in left),
            )

    def __repr__(self) -> str:
        state = "shut down" if self._closed else "open"
        return f"<PoolExecutor pool={self.pool!r} {state} in flight={len(self._tasks)}>"


def attach_loop(
    loop: asyncio.AbstractEventLoop | None = None,
    manager: WorkerManager | None = None,
    *,
    executor_pool: str = "io",
) -> PoolExecutor:
    """Wire an asyncio loop to a manager: its default executor becomes a manager pool.

    Afterwards ``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)`` run on the
    manager's ``executor_pool`` and stop with it; called on the GUI thread it also
    records ``loop`` as the GUI loop that :func:`run_in_loop`,
    :func:`run_coroutine_sync` and :func:`async_slot` use from other threads.  Call it
    once, before the first ``run_in_executor`` (qasync creates its own executor then).

    Args:
        loop: The loop (default: the loop running in this thread).
        manager: The manager (default: :func:`default_manager`).
        executor_pool: The pool that becomes the default executor (default ``"io"``).

    Returns:
        The installed :class:`PoolExecutor`.

    Raises:
        NoEventLoopError: No ``loop`` was given and none runs in this thread.
        UnknownPoolError: The manager has no such pool.

    Example:
        >>> app = QApplication(sys.argv)                        # doctest: +SKIP
        >>> manager = WorkerManager()                           # doctest: +SKIP
        >>> loop = qasync.QEventLoop(app)                       # doctest: +SKIP
        >>> attach_loop(loop, manager)                          # doctest: +SKIP
        >>> with loop:                                          # doctest: +SKIP
        ...     loop.run_until_complete(main())
    """
    if loop is None:
        loop = running_loop("attach_loop() without a loop argument")
    if manager is None:
        from .._manager import default_manager

        manager = default_manager()
    executor = PoolExecutor(manager, executor_pool)
    previous = _default_executor_of(loop)
    if previous is not None and not isinstance(previous, PoolExecutor):
        # qasync made its QThreadExecutor at the first run_in_executor.  Dropping it
        # would destroy running QThreads (a process abort): let its threads end and keep
        # it referenced as long as ours.
        logger.warning(
            "attach_loop(): the loop already had a default executor (%r); call "
            "attach_loop() before the first run_in_executor/to_thread",
            previous,
        )
        previous.shutdown(wait=False)
        executor._replaced = previous
    loop.set_default_executor(executor)
    if manager.engine.is_gui_thread():
        register_gui_loop(loop)
    return executor


def _default_executor_of(loop: asyncio.AbstractEventLoop) -> Any:
    # No public getter exists: qasync keeps its own (name-mangled) attribute, asyncio's
    # base loop another.  Unknown loops simply report none.
    executor = getattr(loop, "_QEventLoop__default_executor", None)
    if executor is None:
        executor = getattr(loop, "_default_executor", None)
    return executor
