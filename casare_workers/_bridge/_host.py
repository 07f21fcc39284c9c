"""What the bridge needs of a manager: a task host (the manager's core provides it).

``PoolExecutor`` must call functions *exactly as given* (a third-party function that
declares ``ctx`` receives no task context), which the public ``submit`` does not do; so
it builds the task itself and has the manager queue it, through these few steps::

    PoolExecutor.submit(fn, *args)
      ─► host.check_open()                     ManagerShutdownError once shut down
      ─► host.pool(name)                       the manager's pool of that name
      ─► TaskHandle(fn, args, kwargs, host.engine, mode=PLAIN)
      ─► host.enqueue(task, pool, options, pool.submit)
                                               owner, key, bookkeeping, the pool's queue

The bridge names the steps in a protocol (its "task host") instead of importing the
manager's class: a ``WorkerManager`` hands its host out with its options
(:func:`host_of`), and the manager's core satisfies :class:`ExecutorHost`
structurally.  (It is not ``casare_workers._core._host.TaskHost``, what a running task
reports to its manager; the manager's core implements both.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._manager import manager_core

if TYPE_CHECKING:
    from .._core._handle import TaskHandle
    from .._engine import DeliveryEngine
    from .._manager import TaskOptions, WorkerManager
    from .._pools._pool import Pool

__all__ = ("ExecutorHost", "host_of")


class ExecutorHost(Protocol):
    """The steps of a manager that queue a task the bridge built itself (a task host)."""

    @property
    def engine(self) -> DeliveryEngine:
        """The delivery engine the manager's tasks are delivered through."""

    @property
    def shutdown_timeout(self) -> float:
        """Seconds a shutdown waits for running work."""

    def check_open(self) -> None:
        """Raise ``ManagerShutdownError`` if the manager no longer takes work."""

    def pool(self, name: str) -> Pool:
        """The pool called ``name`` (``UnknownPoolError`` naming the pools if none)."""

    def enqueue(
        self,
        task: TaskHandle[Any],
        pool: Pool,
        opts: TaskOptions,
        submit: Callable[[TaskHandle[Any], int], None],
    ) -> TaskHandle[Any] | None:
        """Bind ``task`` to the manager with ``opts`` and queue it with ``submit``."""

    def quit_deadline(self) -> float:
        """When a wait made on the application's way out must end (``time.monotonic``)."""


def host_of(
    manager: WorkerManager, pool: str, name: str | None = None
) -> tuple[ExecutorHost, TaskOptions]:
    """The task host of ``manager`` and its default options for ``pool``.

    Raises:
        UnknownPoolError: The manager has no pool called ``pool``.
    """
    options = manager.options(pool=pool, name=name)
    host: ExecutorHost = manager_core(manager)
    return host, options
