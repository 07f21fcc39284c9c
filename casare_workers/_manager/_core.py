"""``ManagerCore``: everything a manager does, in a plain object; its submit path.

``WorkerManager`` is only the QObject face (signals, parent, ``aboutToQuit``): calling
a method of a PySide ``QObject`` subclass costs ~0.3 µs against ~0.05 µs here, and
submit, start, delivery and bookkeeping run for every task.  The core is built in
layers, each a module, each using only the ones below it::

    ManagerCore  (here)      options, submit / map / start ─► enqueue
      └ Hosting  (_hosting)  pools, TaskHost callbacks, busy, statistics, shutdown
          └ TaskBook (_book) tasks in flight by owner and key, owner records, jobs

A task's way in::

    submit(fn, args, kwargs, opts) ─► checks (callable, ctx, progress_callback)
      ─► key_policy "join" and a task in flight under the key: that task's handle
      ─► TaskHandle ─► enqueue: bind it to pool and manager; under the lock: the
         owner's record, the key (the previous task is superseded once the pool has
         accepted the new one) ─► live ─► watchers ─► pool.submit(task, priority)
      ─► on_submitted (GUI thread): busy, task_submitted
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from dataclasses import replace
from typing import Any, TypeVar, cast

from PySide6.QtCore import QObject

from .._config import PoolConfig
from .._core._handle import TaskHandle
from .._engine import DeliveryEngine
from .._errors import ConfigurationError
from .._introspect import WANTS_CTX, WANTS_PROGRESS_CALLBACK, call_mode, positional_slot
from .._owners import check_owner
from .._pools._map import MapHandle
from .._pools._pool import Pool
from .._validation import check_priority, check_seconds
from .._worker import Worker
from ._hosting import Hosting, ManagerFace
from ._options import KEY_POLICIES, KeyPolicy, TaskOptions

__all__ = ("ManagerCore",)

T = TypeVar("T")
R = TypeVar("R")


class ManagerCore(Hosting):
    """Everything a manager does, in a plain object (see the module docstring).

    It implements the protocols its users declare: ``Submitter`` (``TaskOptions``),
    ``TaskHost`` (the tasks), ``JobHost`` (long jobs), ``ExecutorHost`` (the asyncio
    bridge) and ``Stoppable`` (the final shutdown).
    """

    def __init__(
        self,
        facade: ManagerFace,
        engine: DeliveryEngine,
        configs: dict[str, PoolConfig],
        shutdown_timeout: float,
        start_statistics: weakref.WeakMethod[Callable[[], None]],
    ) -> None:
        super().__init__(facade, engine, configs, shutdown_timeout, start_statistics)
        self.default_options = TaskOptions(self)

    # -- options --------------------------------------------------------------------------

    def options(
        self,
        pool: str,
        priority: int,
        owner: QObject | None,
        key: Hashable | None,
        timeout: float | None,
        name: str | None,
        key_policy: str = "supersede",
    ) -> TaskOptions:
        """Validate the options of ``WorkerManager.options`` now; bind them to this core."""
        self.pool(pool)
        check_priority(priority)
        if timeout is not None:
            check_seconds("timeout", timeout)
        if key is not None:
            try:
                hash(key)
            except TypeError:
                raise TypeError(
                    f"key must be hashable (a string or a tuple of them), got {type(key).__name__}"
                ) from None
        if key_policy not in KEY_POLICIES:
            raise ConfigurationError(
                f"key_policy must be one of {', '.join(map(repr, KEY_POLICIES))}, "
                f"got {key_policy!r}"
            )
        if key_policy != "supersede" and key is None:
            raise ConfigurationError(
                f"key_policy={key_policy!r} needs a key: it decides what a second task "
                "with the same key does (e.g. options(key='models', key_policy='join'))"
            )
        record = self.owner_record(check_owner(owner)) if owner is not None else None
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        policy = cast(KeyPolicy, key_policy)
        return TaskOptions(self, pool, priority, record, key, timeout, name, policy)

    # -- submitting -----------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: TaskOptions,
    ) -> TaskHandle[T]:
        """Run ``fn(*args, **kwargs)`` with ``opts`` (the :class:`Submitter` protocol)."""
        if not callable(fn):
            raise TypeError(
                f"submit() expects a callable as its first argument, got {fn!r} "
                f"({type(fn).__name__}); call it as submit(fn, *args, **kwargs)"
            )
        if self.closed:
            self.check_open()
        pool = self.pool(opts.pool)
        if opts.key_policy == "join":
            joined = self.in_flight(opts.owner_record, opts.key)
            if joined is not None:
                return joined
        mode = call_mode(fn)
        task: TaskHandle[T] = TaskHandle(fn, args, kwargs, self.engine, opts.name, mode=mode)
        if mode:
            if mode == WANTS_CTX and ("ctx" in kwargs or (args and _fills_ctx(fn, args))):
                raise TypeError(
                    f"{task.name} declares 'ctx': the task context is passed by the manager, "
                    "do not pass ctx yourself (by keyword, or as one positional argument "
                    "too many)"
                )
            if mode == WANTS_PROGRESS_CALLBACK and "progress_callback" in kwargs:
                raise TypeError(
                    f"{task.name} declares 'progress_callback': it is passed by the manager, "
                    "do not pass progress_callback= yourself"
                )
        joined = self.enqueue(task, pool, opts, pool.submit)
        if joined is not None:  # the new task was never queued: it is dropped here
            return cast("TaskHandle[T]", joined)
        return task

    def map(
        self,
        fn: Callable[[Any], R],
        iterable: Iterable[Any],
        chunksize: int | None,
        opts: TaskOptions,
    ) -> MapHandle[R]:
        """Map ``fn`` over ``iterable`` with ``opts``: one handle, results in order."""
        if not callable(fn):
            raise TypeError(
                f"map() expects a callable first, got {fn!r} ({type(fn).__name__}); "
                "call it as map(fn, items)"
            )
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise ConfigurationError(f"chunksize must be an int >= 1 or None, got {chunksize!r}")
        try:
            items = list(iterable)
        except TypeError:
            raise TypeError(
                f"map() expects an iterable of items, got {type(iterable).__name__}"
            ) from None
        self.check_open()
        pool = self.pool(opts.pool)
        task: MapHandle[R] = MapHandle(
            fn, items, engine=self.engine, name=opts.name, chunksize=chunksize
        )
        self.enqueue(task, pool, opts, pool.submit_map)  # type: ignore[arg-type]
        return task

    def start(self, worker: Worker[T], opts: TaskOptions) -> TaskHandle[T]:
        """Start ``worker`` with ``opts`` (its own owner, if any, is watched too)."""
        if not isinstance(worker, Worker):
            raise TypeError(
                f"start() takes a casare_workers.Worker, got {type(worker).__name__}; "
                "use submit(fn, ...) for plain functions"
            )
        self.check_open()
        pool = self.pool(opts.pool)
        task = worker.handle
        own = task.owner_record  # worker.owner, set before starting
        if own is not None:
            owner = own.get()
            if opts.owner_record is None:
                if owner is not None:  # the manager watches it too (keys, queued tasks)
                    opts = replace(opts, owner_record=self.owner_record(owner))
            elif opts.owner_record.get() is not owner:
                raise ValueError(
                    f"Worker {task.name!r} has an owner of its own (worker.owner) and the "
                    "options name another; give the owner in one place"
                )
        if opts.name is not None:
            task.name = opts.name
        self.enqueue(task, pool, opts, pool.submit)
        return task

    def enqueue(
        self,
        task: TaskHandle[Any],
        pool: Pool,
        opts: TaskOptions,
        submit: Callable[[TaskHandle[Any], int], None],
    ) -> TaskHandle[Any] | None:
        """Queue ``task`` on ``pool`` with ``opts``; return None when it was queued.

        With ``key_policy="join"``, a task in flight under the same key is returned
        instead and ``task`` is not queued (the check and the queueing are one step
        under the lock, so two threads cannot both start the request).
        """
        record = opts.owner_record
        # Claims the task (a Worker runs once: AlreadyStartedError on a second start).
        task.bind(
            pool,
            self,
            self.engine,
            priority=opts.priority,
            timeout=opts.timeout,
            owner=record,
            key=opts.key,
        )
        superseded: TaskHandle[Any] | None = None
        if record is not None or opts.key is not None:
            with self.lock:
                if record is not None:
                    if not record.alive:
                        raise ValueError(
                            "the owner of these options has been destroyed; "
                            "submit from a live widget or omit owner"
                        )
                if opts.key is not None:
                    key = (record, opts.key)
                    superseded = self.keys.get(key)
                    if (
                        opts.key_policy == "join"
                        and superseded is not None
                        and not superseded.done()
                    ):
                        # Another thread submitted the same request meanwhile: join it.
                        return superseded
                    self.keys[key] = task
                if record is not None:
                    record.tasks.add(task)
                self.owned[task.id] = (record, opts.key)
        # A single dict store is atomic under the GIL: no lock on the plain path.
        self.live[task.id] = task
        if self.watchers:
            for watcher in self.watchers:
                watcher.append(task)
        try:
            submit(task, opts.priority)
        except BaseException:
            with self.lock:
                self.forget(task)
                if (
                    superseded is not None
                    and not superseded.done()
                    and self.keys.get((record, opts.key)) is None
                ):
                    # The refused task never replaced anything: the previous one goes on.
                    self.keys[(record, opts.key)] = superseded
            raise
        # After the pool accepted the new task: a refused submit (unpicklable arguments,
        # a closed pool) must not cancel the task it would have replaced.
        if superseded is not None:
            superseded.cancel(reason="superseded")
        if not self.busy or self.wants_submitted:
            if self.engine.is_gui_thread():
                self.on_submitted(task)
            else:
                self.engine.post(lambda: self.on_submitted(task))
        return None


def _fills_ctx(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """True if ``args`` reach ``fn``'s positional ``ctx`` parameter (the manager's to pass)."""
    slot = positional_slot(fn, "ctx")
    return slot is not None and len(args) > slot
