"""The contract between the manager, its tasks and a pool backend.

The manager owns named pools of different kinds (threads here; processes and Dask in
their own modules) and talks to each only through :class:`Pool`.  A task (a
``TaskHandle``) is bound to its pool before it is queued: it uses the pool's ``lock``
for its one terminal transition and calls ``count_settled`` under that lock, so
``submitted == queued + running + succeeded + failed + cancelled`` holds at every moment.

Life of a task in a pool::

    manager ─ submit(task, priority) ─► pool: task.mark_queued(), counts it
    pool ─ runs it (thread) or ships it (process, Dask) ─► task.begin(): RUNNING
    whoever decides the outcome ─ task.succeed(v) | fail(e) | cancel() | time_out()
                                  ─► its one terminal transition calls count_settled
                                     under pool.lock
    task.cancel() while queued/running ─► pool.on_cancel(task) (stop the work if it can)
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .._core._host import PoolSlot
from .._core._state import TaskState
from .._errors import ConfigurationError, ManagerShutdownError, describe_exception

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._config import PoolConfig
    from .._core._handle import TaskHandle
    from ._map import MapHandle
    from ._statistics import PoolStatistics

__all__ = ("POOL_FACTORIES", "Pool", "TaskCounters", "build_pool", "still_queued")

_QUEUED, _RUNNING = TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _FAILED = TaskState.SUCCEEDED, TaskState.FAILED

#: Pool kind -> (module, class).  Imported on first use, so an application never imports
#: the process machinery it does not need, nor ``distributed`` (an optional dependency).
POOL_FACTORIES: dict[str, tuple[str, str]] = {
    "thread": ("._threadpool", "ThreadPool"),
    "process": ("._processpool", "ProcessPool"),
    "dask": ("._daskpool", "DaskPool"),
}


class Pool(PoolSlot, Protocol):
    """What a pool backend provides to the manager.  All methods are thread-safe.

    It is also the :class:`~casare_workers._core._host.PoolSlot` its tasks are bound to
    (``name``, ``lock``, the counters, ``on_cancel``, ``timeout_fate``,
    ``wait_from_worker``).
    """

    kind: str
    max_workers: int

    def submit(self, task: TaskHandle[Any], priority: int) -> None:
        """Queue ``task``; mark it QUEUED and count it.  Raise ManagerShutdownError if closed."""

    def submit_map(self, task: MapHandle[Any], priority: int) -> None:
        """Queue a ``map`` (one task over many items), chunked as suits the backend."""

    def statistics(self) -> PoolStatistics:
        """A consistent snapshot of the counters."""

    def queued_tasks(self) -> list[TaskHandle[Any]]:
        """The tasks still waiting (a snapshot)."""

    def still_running(self) -> list[str]:
        """Names of functions executing now whose task may already have ended."""

    def close(self) -> None:
        """Refuse new work; queued work still runs."""

    def stop(self) -> None:
        """Refuse new work and let the workers exit once the queue is empty."""

    def join(self, deadline: float) -> bool:
        """Wait until every worker has exited or ``time.monotonic()`` passes ``deadline``."""

    def threads(self) -> list[threading.Thread]:
        """The backend's live threads (for leak checks in tests)."""


class TaskCounters:
    """The task counters every pool backend keeps, and their one set of rules.

    The counting methods are called with the pool's lock held (a task's terminal
    transition calls :meth:`count_settled` under it), so
    ``submitted == queued + running + succeeded + failed + cancelled`` holds at every
    moment.  A task that was never counted (a ``Worker`` still PENDING) is ignored.
    Work is counted only while the pool accepts it (:meth:`register_locked`,
    :meth:`close`).
    """

    name: str
    lock: threading.Lock
    _accepting = True
    #: What stopped the pool working (a bug in its own thread), for the refusal message.
    _failure: BaseException | None = None

    @property
    def timeout_fate(self) -> str | None:
        """What happens to work that outlives its timeout (None: a thread keeps running)."""
        return None

    def wait_from_worker(self, task: Any, event: threading.Event) -> bool | None:
        """A blocking wait for ``task`` with no timeout; None: wait as usual (see ThreadPool)."""
        return None

    _queued = 0
    _running = 0
    _submitted = 0
    _succeeded = 0
    _failed = 0
    _cancelled = 0

    def check_accepting(self) -> None:
        """Raise ``ManagerShutdownError`` (saying why) if the pool takes no more work."""
        if self._accepting:
            return
        failure = self._failure
        if failure is not None:
            raise ManagerShutdownError(
                f"pool {self.name!r} stopped working after an internal error "
                f"({describe_exception(failure)}; the log has the traceback); create a "
                "new WorkerManager to run more work"
            ) from failure
        raise ManagerShutdownError(
            f"pool {self.name!r} is shut down; create a new WorkerManager to run more work"
        )

    def register_locked(self, task: TaskHandle[Any]) -> None:
        """Queue and count ``task``, or raise as :meth:`check_accepting` (lock held)."""
        self.check_accepting()
        task.mark_queued()
        self.count_submitted()

    def close(self) -> None:
        """Refuse new work; queued work still runs."""
        with self.lock:
            self._accepting = False

    def count_submitted(self) -> None:
        """A task was queued (called with the lock held)."""
        self._queued += 1
        self._submitted += 1

    def count_started(self) -> None:
        """A queued task started running (called with the lock held)."""
        self._queued -= 1
        self._running += 1

    def count_settled(self, previous: TaskState, state: TaskState) -> None:
        """Count one terminal transition (called with the lock held)."""
        if previous is _QUEUED:
            self._queued -= 1
        elif previous is _RUNNING:
            self._running -= 1
        else:
            return  # never counted (a PENDING task)
        if state is _SUCCEEDED:
            self._succeeded += 1
        elif state is _FAILED:
            self._failed += 1
        else:
            self._cancelled += 1

    def counters(self) -> dict[str, int]:
        """The counters as ``PoolStatistics`` keyword arguments (called with the lock held)."""
        return {
            "queued": self._queued,
            "running": self._running,
            "submitted": self._submitted,
            "succeeded": self._succeeded,
            "failed": self._failed,
            "cancelled": self._cancelled,
        }


def still_queued(tasks: Iterable[TaskHandle[Any]]) -> list[TaskHandle[Any]]:
    """The tasks among ``tasks`` that are still QUEUED, each once, in order (a snapshot)."""
    seen: dict[int, TaskHandle[Any]] = {}
    for task in tasks:
        if task.state is _QUEUED:
            seen.setdefault(task.id, task)
    return list(seen.values())


def build_pool(name: str, config: PoolConfig) -> Pool:
    """Build the pool ``name`` as ``config.kind`` says (the manager's core calls this).

    Raises:
        ConfigurationError: The kind is unknown, or its optional dependency is missing
            (the message names the extra to install).
    """
    try:
        module_name, class_name = POOL_FACTORIES[config.kind]
    except KeyError:
        raise ConfigurationError(
            f"pool {name!r} has unknown kind {config.kind!r}; "
            f"use one of {', '.join(map(repr, POOL_FACTORIES))}"
        ) from None
    try:
        module = importlib.import_module(module_name, __package__)
    except ImportError as exc:
        raise ConfigurationError(
            f"pool {name!r} has kind {config.kind!r}, which needs a package that is not "
            f"installed ({exc.name or exc}); install it with: "
            f"pip install 'casare_workers[{config.kind}]'"
        ) from exc
    pool: Pool = getattr(module, class_name)(name, config)
    return pool
