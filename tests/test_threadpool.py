from __future__ import annotations

import functools
import random
import threading
import time
from typing import Any, cast

import pytest

from casare_workers import (
    BlockingCallError,
    PoolConfig,
    TaskHandle,
    TaskState,
    WorkerManager,
)
from casare_workers._pools._threadpool import ThreadPool
from casare_workers.pytest_plugin import wait_for_handle


class _Item:
    """A pool item (what ThreadPool runs): ``execute()`` and the ``task`` it works for."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.task = self

    def execute(self) -> None:
        self.fn()

    def done(self) -> bool:
        return False


def test_idle_threads_expire(qapp: Any) -> None:
    pool = ThreadPool("t", PoolConfig(2, idle_timeout=0.05))
    ran = threading.Event()
    pool.push_items([cast(Any, _Item(ran.set))], 0)
    assert ran.wait(5)
    assert pool.join(time.monotonic() + 5)  # the idle thread exits by itself
    assert pool.threads() == []


def test_threads_are_reused_not_created_per_task(qapp: Any) -> None:
    names: set[str] = set()
    lock = threading.Lock()

    def record() -> None:
        with lock:
            names.add(threading.current_thread().name)

    with WorkerManager(pools={"io": 2}) as manager:
        for _ in range(10):
            handles = [manager.submit(record) for _ in range(50)]
            assert manager.wait_for_done(5)
            assert all(h.done() for h in handles)
    assert 1 <= len(names) <= 2
    assert all(name.startswith("casare-io-") for name in names)


def test_worker_threads_are_daemons(qapp: Any) -> None:
    with WorkerManager(pools={"io": 1}) as manager:
        flags: list[bool] = []
        manager.submit(lambda: flags.append(threading.current_thread().daemon))
        assert manager.wait_for_done(5)
    assert flags == [True]


def test_stop_threads_releases_idle_threads(qapp: Any) -> None:
    pool = ThreadPool("t", PoolConfig(3, idle_timeout=60))
    barrier = threading.Barrier(3, timeout=5)  # needs three threads at once
    done = threading.Semaphore(0)

    def item() -> None:
        barrier.wait()
        done.release()

    pool.push_items([cast(Any, _Item(item)) for _ in range(3)], 0)
    for _ in range(3):
        assert done.acquire(timeout=5)
    assert pool.statistics().workers == 3  # parked, waiting for work (idle_timeout 60 s)
    pool.stop()
    assert pool.join(time.monotonic() + 5)


# -- a task that blocks on work queued behind it on its own pool ------------------------------


def test_task_waiting_for_work_queued_on_its_own_full_pool_gets_a_clear_error(
    qapp: Any,
) -> None:
    with WorkerManager(pools={"io": 1}) as manager:
        inner: list[TaskHandle[int]] = []

        def outer() -> int:
            handle = manager.submit(int, "4")
            inner.append(handle)
            return handle.result()  # the pool's only thread is this one: a deadlock

        handle = manager.submit(outer)
        with pytest.raises(BlockingCallError, match="every thread of pool 'io'"):
            wait_for_handle(handle, 10)
        assert wait_for_handle(inner[0], 10) == 4  # it ran once the thread was free


def test_the_last_thread_of_a_pool_to_block_on_its_own_queue_gets_the_error(
    qapp: Any,
) -> None:
    with WorkerManager(pools={"io": 2}) as manager:
        both_busy = threading.Barrier(2, timeout=5)  # both threads run an outer task

        def outer(text: str) -> int:
            both_busy.wait()
            return manager.submit(int, text).result()

        handles = [manager.submit(outer, "1"), manager.submit(outer, "2")]
        assert manager.wait_for_done(10)
        states = sorted(h.state.value for h in handles)
        assert states == [TaskState.FAILED.value, TaskState.SUCCEEDED.value]
        failed = next(h for h in handles if h.state is TaskState.FAILED)
        assert isinstance(failed.exception(0), BlockingCallError)


def test_waiting_on_the_own_pool_with_a_thread_to_spare_is_allowed(qapp: Any) -> None:
    with WorkerManager(pools={"io": 2}) as manager:

        def outer() -> int:
            return manager.submit(int, "5").result()  # the pool's second thread runs it

        assert wait_for_handle(manager.submit(outer), 10) == 5


# -- priorities ------------------------------------------------------------------------------


def test_priority_levels_are_released_once_their_work_has_run(qapp: Any) -> None:
    """Any number of distinct priorities: served highest first, none kept afterwards."""
    pool = ThreadPool("t", PoolConfig(1))
    running = threading.Event()
    release = threading.Event()

    def hold() -> None:
        running.set()
        release.wait(10)

    pool.push_items([cast(Any, _Item(hold))], 0)
    assert running.wait(10)  # the only thread is busy: everything below queues
    order: list[int] = []
    done = threading.Semaphore(0)
    priorities = list(range(-500, 500))
    random.Random(12).shuffle(priorities)

    def record(priority: int) -> None:
        order.append(priority)
        done.release()

    for priority in priorities:
        item = _Item(functools.partial(record, priority))
        pool.push_items([cast(Any, item)], priority)
    release.set()
    for _ in priorities:
        assert done.acquire(timeout=10)
    assert order == sorted(priorities, reverse=True)
    assert pool.priority_levels() == 0  # nothing queued: no level kept
    pool.stop()
    assert pool.join(time.monotonic() + 10)


def _saturate(
    manager: WorkerManager, gate: threading.Event, threads: int = 2
) -> list[TaskHandle[None]]:
    """Occupy every thread of pool "io" with tasks blocked on ``gate``; return them."""
    started = threading.Barrier(threads + 1, timeout=10)

    def block() -> None:
        started.wait()
        gate.wait(10)

    blockers = [manager.submit(block) for _ in range(threads)]
    started.wait()  # every thread exists and is running a task
    return blockers


def _state(handle: TaskHandle[Any]) -> TaskState:
    return handle.state  # read again (a plain attribute read would be narrowed by mypy)


def _consistent(stats: Any) -> bool:
    parts = stats.queued + stats.running + stats.succeeded + stats.failed + stats.cancelled
    return bool(stats.submitted == parts)


def test_a_submit_that_finds_the_lock_taken_while_every_thread_runs_does_not_wait(
    qapp: Any,
) -> None:
    from casare_workers._manager import manager_core

    gate = threading.Event()
    with WorkerManager(pools={"io": 2}) as manager:
        pool = manager_core(manager).pool("io")
        blockers = _saturate(manager, gate)
        # Held as a worker holds it between two tasks.  (On a pool that waited for its
        # lock in submit, this submit from the lock's own holder would never return.)
        assert pool.lock.acquire(timeout=5)
        try:
            handle = manager.submit(abs, -5)
            assert handle.state is TaskState.PENDING  # in the inbox, not queued yet
        finally:
            pool.lock.release()
        stats = pool.statistics()  # a snapshot takes the inbox in first
        assert _state(handle) is TaskState.QUEUED
        assert (stats.submitted, stats.queued, stats.running) == (3, 1, 2)
        assert _consistent(stats)
        gate.set()
        assert wait_for_handle(handle) == 5
        assert all(wait_for_handle(b) is None for b in blockers)
        assert manager.wait_for_done(5)
        final = pool.statistics()
        assert (final.submitted, final.succeeded, final.queued) == (3, 3, 0)


def test_a_task_cancelled_in_the_inbox_never_runs_and_is_counted_once(qapp: Any) -> None:
    from casare_workers._manager import manager_core

    gate = threading.Event()
    ran: list[int] = []
    with WorkerManager(pools={"io": 2}) as manager:
        pool = manager_core(manager).pool("io")
        blockers = _saturate(manager, gate)
        assert pool.lock.acquire(timeout=5)
        try:
            handle = manager.submit(ran.append, 1)
        finally:
            pool.lock.release()
        assert handle.cancel()
        stats = pool.statistics()
        assert (stats.submitted, stats.queued, stats.cancelled) == (3, 0, 1)
        assert _consistent(stats)
        gate.set()
        assert all(wait_for_handle(b) is None for b in blockers)
        assert manager.wait_for_done(5)
        assert handle.cancelled()
        assert ran == []
        final = pool.statistics()
        assert (final.submitted, final.succeeded, final.cancelled) == (3, 2, 1)
        assert _consistent(final)


def test_inbox_tasks_keep_submission_order_with_the_queued_ones(qapp: Any) -> None:
    from casare_workers._manager import manager_core

    gate = threading.Event()
    order: list[int] = []
    with WorkerManager(pools={"io": 1}) as manager:
        pool = manager_core(manager).pool("io")
        blockers = _saturate(manager, gate, threads=1)
        first = manager.submit(order.append, 1)  # the lock free: queued at once
        assert pool.lock.acquire(timeout=5)
        try:
            second = manager.submit(order.append, 2)  # into the inbox
        finally:
            pool.lock.release()
        third = manager.submit(order.append, 3)  # takes the inbox in first (or joins it)
        pool.statistics()  # a snapshot takes in whatever is left in the inbox
        assert [h.state for h in (first, second, third)] == [TaskState.QUEUED] * 3
        gate.set()
        for h in (*blockers, first, second, third):
            wait_for_handle(h)
        assert order == [1, 2, 3]  # one thread: run in submission order, each once
