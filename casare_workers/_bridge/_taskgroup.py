"""``TaskGroup``: ``asyncio.TaskGroup`` whose tasks run on a manager's pools.

Structured concurrency: the first failure cancels the other tasks (their workers
included), and an owner's destruction or closed window cancels the whole block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QObject

from .._owners import check_owner
from ._owned import OwnerTasks, tasks_of

if TYPE_CHECKING:
    from .._core._handle import TaskHandle
    from .._manager import TaskOptions, WorkerManager

__all__ = ("TaskGroup",)

T = TypeVar("T")


class TaskGroup:
    """Structured concurrency bound to a manager (and optionally an owner widget).

    An ``asyncio.TaskGroup`` whose :meth:`submit` runs functions on the manager's
    pools.  When any task fails, the others are cancelled (workers included: queued
    ones are removed, running ones see ``ctx.cancelled``) and the errors are raised
    together as an ``ExceptionGroup`` when the block ends, as with
    ``asyncio.TaskGroup``.  With an ``owner``, destroying it (or closing its window)
    cancels the block and every task in it; the ``async with`` then raises
    ``asyncio.CancelledError``, so no code that touches the gone widget runs.

    Args:
        manager: The manager (default: :func:`default_manager`).
        owner: A QObject (usually the widget); see above.
        pool: The pool :meth:`submit` runs on (default ``"io"``).

    Example:
        >>> async with TaskGroup(manager, owner=self) as group:   # doctest: +SKIP
        ...     models = group.submit(fetch_models, provider)
        ...     quota = group.submit(fetch_quota, provider)
        >>> self.show(models.result(), quota.result())            # doctest: +SKIP
    """

    def __init__(
        self,
        manager: WorkerManager | None = None,
        *,
        owner: QObject | None = None,
        pool: str = "io",
    ) -> None:
        self._manager = manager
        self._owner = check_owner(owner) if owner is not None else None
        self._pool = pool
        self._options: TaskOptions | None = None
        self._group: asyncio.TaskGroup | None = None
        self._host: asyncio.Task[Any] | None = None
        self._record: OwnerTasks | None = None
        if manager is not None:
            manager.options(pool=pool)  # fail now on a bad pool name

    async def __aenter__(self) -> TaskGroup:
        if self._group is not None:
            raise RuntimeError("this TaskGroup was already entered; create a new one")
        manager = self._manager
        if manager is None:
            from .._manager import default_manager

            manager = default_manager()
        self._options = manager.options(pool=self._pool, owner=self._owner)
        group = self._group = asyncio.TaskGroup()
        await group.__aenter__()
        host = self._host = asyncio.current_task()
        if self._owner is not None and host is not None:
            # The owner's record cancels the host task when the owner goes away; the
            # asyncio.TaskGroup then cancels every child and re-raises the cancellation.
            self._record = tasks_of(self._owner)
            self._record.add(host)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._group
        assert group is not None
        try:
            await group.__aexit__(exc_type, exc, tb)
        finally:
            if self._record is not None and self._host is not None:
                self._record.tasks.discard(self._host)

    def _entered(self) -> tuple[asyncio.TaskGroup, TaskOptions]:
        if self._group is None or self._options is None:
            raise RuntimeError("enter the group first: 'async with TaskGroup(...) as group:'")
        return self._group, self._options

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Task[T]:
        """Run ``fn(*args, **kwargs)`` on the group's pool; return the awaiting task.

        The task's result is the function's result; cancelling the task (or the group)
        cancels the worker.  Runs on the loop's thread.
        """
        group, options = self._entered()
        handle = options.submit(fn, *args, **kwargs)
        task = group.create_task(_await_handle(handle), name=f"submit {handle.name}")

        def cancel_worker(done: asyncio.Task[T]) -> None:
            # Also covers a task cancelled before its first step (its coroutine never
            # reached the await that would have cancelled the worker).
            if done.cancelled():
                handle.cancel(reason="cancelled: its task group was cancelled")

        task.add_done_callback(cancel_worker)
        return task

    def create_task(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """Start a coroutine in the group (as ``asyncio.TaskGroup.create_task``)."""
        group, _ = self._entered()
        return group.create_task(coro, name=name)


async def _await_handle(handle: TaskHandle[T]) -> T:
    return await handle
