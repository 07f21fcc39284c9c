"""The process pool: real spawned worker processes, real crashes, real kills.

Task functions live in ``tests/proc_tasks.py`` (the workers import them).  Most tests
share one module-scoped manager so that its worker processes stay warm; each test
must leave it idle (checked after every test).  Cross-process gates are files in
``tmp_path`` that a task waits for with ``ctx.wait`` (a hand-over, not a timing bet).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from casare_workers import (
    ManagerShutdownError,
    PoolConfig,
    PoolStatistics,
    SerializationError,
    TaskError,
    TaskHandle,
    TaskState,
    TaskTimeoutError,
    Worker,
    WorkerCrashedError,
    WorkerManager,
)
from casare_workers._pools import _processworker
from casare_workers._pools._pickling import RemoteTraceback
from casare_workers._pools._processpool import ProcessPool, size_for_memory
from casare_workers._pools._processworker import NICENESS
from casare_workers.pytest_plugin import AsyncRunner, assert_gui_thread, wait_for_handle
from tests import proc_tasks as tasks
from tests.processes import pid_alive, wait_dead

#: Generous: spawning a worker imports PySide6 (0.3-1 s on a busy CI machine).
WAIT = tasks.WAIT
WAIT_MS = int(WAIT * 1000)


# -- fixtures --------------------------------------------------------------------------------


def _check_no_process_left(managers: list[WorkerManager], before: set[Any]) -> None:
    for manager in managers:
        report = manager.shutdown()
        assert report.still_running == ()
        assert manager.threads() == []
        assert manager.live_tasks() == []
    assert set(multiprocessing.active_children()) <= before


@pytest.fixture(scope="module")
def shared(qapp: Any) -> Iterator[WorkerManager]:
    """One manager for the module: ``proc`` (2 workers, long grace), ``kill`` (short grace)."""
    manager = WorkerManager(
        pools={
            "proc": PoolConfig(2, kind="process", cancel_grace=WAIT),
            "kill": PoolConfig(1, kind="process", cancel_grace=0.1),
        },
        shutdown_timeout=10,
    )
    yield manager
    _check_no_process_left([manager], set())


@pytest.fixture
def mgr(shared: WorkerManager, qtbot: QtBot) -> Iterator[WorkerManager]:
    """The shared manager; the test must leave no task and no busy worker in it."""
    yield shared
    assert shared.wait_for_done(WAIT), f"tasks left behind: {shared.live_tasks()}"
    # A worker whose task ended early (a cancelled map chunk) may need a moment to
    # notice; one that never frees itself is a leak.
    qtbot.waitUntil(
        lambda: all(stats(shared, pool).busy == 0 for pool in ("proc", "kill")), timeout=WAIT_MS
    )


@pytest.fixture
def make_manager(qapp: Any) -> Iterator[Callable[..., WorkerManager]]:
    """Fresh managers with a ``"proc"`` process pool; none may leave a process behind."""
    made: list[WorkerManager] = []
    before = set(multiprocessing.active_children())

    def make(workers: int = 1, **config: Any) -> WorkerManager:
        manager = WorkerManager(
            pools={"proc": PoolConfig(workers, kind="process", **config)}, shutdown_timeout=10
        )
        made.append(manager)
        return manager

    yield make
    _check_no_process_left(made, before)


def stats(manager: WorkerManager, pool: str = "proc") -> PoolStatistics:
    return manager.statistics()[pool]


def proc_pool(manager: WorkerManager, pool: str = "proc") -> ProcessPool:
    found = manager._core.pools[pool]
    assert isinstance(found, ProcessPool)
    return found


def pid_from_status(qtbot: QtBot, handle: Any) -> int:
    qtbot.waitUntil(lambda: (handle.status_text or "").startswith("pid "), timeout=WAIT_MS)
    return int(handle.status_text.split()[1])


# -- running ----------------------------------------------------------------------------------


def test_process_task_runs_in_a_spawned_worker(mgr: WorkerManager) -> None:
    handle = mgr.options(pool="kill").submit(tasks.child_facts)
    events: list[str] = []

    def record(name: str) -> Callable[..., None]:
        def slot(*_: object) -> None:
            assert_gui_thread()
            events.append(name)

        return slot

    for name in ("started", "result", "finished"):
        getattr(handle.signals, name).connect(record(name))
    pid, inherited_qt, niceness = wait_for_handle(handle, WAIT)
    assert pid != os.getpid()
    assert not inherited_qt  # spawn: a fresh interpreter, no copied Qt state
    assert niceness == min(19, os.nice(0) + NICENESS)  # the GUI process wins the CPU
    assert events == ["started", "result", "finished"]
    assert proc_pool(mgr, "kill").worker_pids() == [pid]


def test_process_error_arrives_unchanged_with_the_remote_traceback(mgr: WorkerManager) -> None:
    handle = mgr.options(pool="proc").submit(tasks.raise_value_error, "bad input")
    errors: list[TaskError] = []
    handle.signals.error.connect(errors.append)
    with pytest.raises(ValueError, match="bad input") as info:
        wait_for_handle(handle, WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise_value_error" in cause.text
    assert errors[0].exception is info.value
    assert "RemoteTraceback" in errors[0].traceback
    assert handle.state is TaskState.FAILED


def test_process_ctx_progress_and_status_are_coalesced(mgr: WorkerManager) -> None:
    handle = mgr.options(pool="proc").submit(tasks.count_to, 100_000)
    progress: list[tuple[int, int]] = []
    statuses: list[str] = []
    handle.signals.progress.connect(lambda c, t: progress.append((c, t)))
    handle.signals.status.connect(statuses.append)
    assert wait_for_handle(handle, WAIT) == 100_000
    assert progress[-1] == (100_000, 100_000)  # the final value always arrives
    assert len(progress) < 1_000  # ... but not 100 000 signals
    assert statuses == ["counted"]


def test_process_progress_callback_style_is_supported(mgr: WorkerManager) -> None:
    handle = mgr.options(pool="proc").submit(tasks.tutorial_style)
    assert wait_for_handle(handle, WAIT) == "ok"
    assert handle.progress_value == (50, 100)


def test_process_map_chunks_automatically_and_keeps_order(mgr: WorkerManager) -> None:
    before = stats(mgr)
    handle = mgr.options(pool="proc").map(tasks.square, range(2000))
    assert wait_for_handle(handle, WAIT) == [x * x for x in range(2000)]
    assert handle.chunks == 2 * 4  # CHUNKS_PER_WORKER per worker, not 2000 round trips
    assert handle.progress_value == (2000, 2000)
    after = stats(mgr)
    assert after.submitted - before.submitted == after.succeeded - before.succeeded == 1


def test_refused_submit_does_not_supersede_the_task_it_would_replace(
    mgr: WorkerManager, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    opts = mgr.options(pool="proc", key="preview")
    first = opts.submit(tasks.wait_for_file, str(gate))
    try:
        with pytest.raises(SerializationError, match="argument 0"):
            opts.submit(tasks.square, threading.Lock())
        assert not first.done()  # the refused task replaced nothing
    finally:
        gate.touch()
    assert wait_for_handle(first, WAIT) > 0  # a pid: it ran to the end, not cancelled
    assert wait_for_handle(opts.submit(tasks.square, 3), WAIT) == 9  # the key still works


def test_process_map_spreads_over_the_workers(
    mgr: WorkerManager, qtbot: QtBot, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    # Park one worker, so that the map must run on the other one, then release it.
    parked = mgr.options(pool="proc").submit(tasks.wait_for_file, str(gate))
    parked_pid = pid_from_status(qtbot, parked)
    handle = mgr.options(pool="proc").map(tasks.pid_of, range(4), chunksize=1)
    qtbot.waitUntil(lambda: (handle.progress_value or (0, 0))[0] >= 1, timeout=WAIT_MS)
    gate.touch()
    pids = wait_for_handle(handle, WAIT)
    assert wait_for_handle(parked, WAIT) == parked_pid
    assert len(pids) == 4
    assert os.getpid() not in pids
    assert any(pid != parked_pid for pid in pids)


def test_process_map_async_iteration_yields_each_chunk_as_it_arrives(
    mgr: WorkerManager, qasync_loop: AsyncRunner, tmp_path: Path
) -> None:
    ready, gate = tmp_path / "ready", tmp_path / "gate"
    ready.touch()
    items = [str(ready)] * 2 + [str(gate)] * 2
    handle = mgr.options(pool="proc").map(tasks.wait_for_path_item, items, chunksize=2)

    async def main() -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        async for pair in handle:
            seen.append(pair)
            if len(seen) == 2:
                gate.touch()  # the second chunk is held until the first was yielded
        return seen

    expected = [(0, str(ready)), (1, str(ready)), (2, str(gate)), (3, str(gate))]
    assert qasync_loop.run(main(), timeout=WAIT) == expected


def test_process_map_error_names_the_item(mgr: WorkerManager) -> None:
    handle = mgr.options(pool="proc").map(tasks.fail_on_seven, range(20), chunksize=5)
    with pytest.raises(KeyError) as info:
        wait_for_handle(handle, WAIT)
    assert "raised by item 7 of map(fail_on_seven)" in (info.value.__notes__ or [])


def test_process_empty_map_succeeds_without_a_worker(
    make_manager: Callable[..., WorkerManager],
) -> None:
    manager = make_manager()
    assert wait_for_handle(manager.options(pool="proc").map(tasks.square, []), WAIT) == []
    assert proc_pool(manager).threads() == []


def test_process_priority_orders_the_queue(
    mgr: WorkerManager, qtbot: QtBot, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    blocker = mgr.options(pool="kill").submit(tasks.wait_for_file, str(gate))
    pid_from_status(qtbot, blocker)
    order: list[int] = []
    low = [mgr.options(pool="kill").submit(tasks.square, x) for x in (1, 2)]
    high = mgr.options(pool="kill", priority=5).submit(tasks.square, 3)
    for handle in (*low, high):
        handle.then(order.append)
    gate.touch()
    assert mgr.wait_for_done(WAIT)
    assert order == [9, 1, 4]


def test_process_pool_runs_a_plain_function_worker(mgr: WorkerManager, qtbot: QtBot) -> None:
    worker: Worker[int] = Worker(tasks.square, 7)
    with qtbot.waitSignal(worker.signals.result, timeout=WAIT_MS) as blocker:
        mgr.options(pool="proc").start(worker)
    assert blocker.args == [49]


def test_process_handle_future_works_from_another_thread(mgr: WorkerManager, qtbot: QtBot) -> None:
    handle = mgr.options(pool="proc").submit(tasks.square, 6)
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(handle.future.result(WAIT)))
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=WAIT_MS)
    assert results == [36]


def test_process_many_small_tasks_from_several_threads_all_complete(mgr: WorkerManager) -> None:
    """Wake-ups from many threads at once must never be lost (a stuck pool is a hang)."""
    opts = mgr.options(pool="proc")
    handles: list[TaskHandle[int]] = []
    lock = threading.Lock()
    start = threading.Barrier(4, timeout=WAIT)

    def submit_many(base: int) -> None:
        start.wait()
        for x in range(base, base + 150):
            handle = opts.submit(tasks.square, x)
            with lock:
                handles.append(handle)

    threads = [threading.Thread(target=submit_many, args=(i * 1000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(handles) == 600
    assert all(h.wait(WAIT) for h in handles)
    assert sorted(h.result(0) for h in handles) == sorted(
        x * x for i in range(4) for x in range(i * 1000, i * 1000 + 150)
    )


# -- cancellation and timeouts ------------------------------------------------------------


def test_process_cancel_running_task_stops_it_cooperatively(
    mgr: WorkerManager, qtbot: QtBot
) -> None:
    restarts = stats(mgr).restarts
    handle = mgr.options(pool="proc").submit(tasks.wait_for_cancel)
    pid = pid_from_status(qtbot, handle)
    with qtbot.waitSignal(handle.signals.cancelled, timeout=WAIT_MS):
        assert handle.cancel()
    assert handle.state is TaskState.CANCELLED
    # The function saw ctx.wait return True and returned: its process lives on.
    qtbot.waitUntil(lambda: stats(mgr).busy == 0, timeout=WAIT_MS)
    assert pid in proc_pool(mgr).worker_pids()
    assert stats(mgr).restarts == restarts


def test_process_cancel_uncooperative_task_kills_its_process_after_the_grace(
    mgr: WorkerManager, qtbot: QtBot
) -> None:
    restarts = stats(mgr, "kill").restarts
    handle = mgr.options(pool="kill").submit(tasks.ignore_cancel)
    pid = pid_from_status(qtbot, handle)
    assert handle.cancel()
    assert handle.state is TaskState.CANCELLED  # at once, as on threads
    qtbot.waitUntil(lambda: stats(mgr, "kill").restarts == restarts + 1, timeout=WAIT_MS)
    new_pid = wait_for_handle(mgr.options(pool="kill").submit(tasks.child_facts), WAIT)[0]
    assert new_pid != pid


def test_process_timeout_fails_the_task_and_replaces_the_process(
    mgr: WorkerManager, qtbot: QtBot
) -> None:
    restarts = stats(mgr, "kill").restarts
    handle = mgr.options(pool="kill", timeout=0.3).submit(tasks.ignore_cancel)
    with pytest.raises(TaskTimeoutError, match="killed and replaced"):
        wait_for_handle(handle, WAIT)
    qtbot.waitUntil(lambda: stats(mgr, "kill").restarts == restarts + 1, timeout=WAIT_MS)
    assert wait_for_handle(mgr.options(pool="kill").submit(tasks.square, 4), WAIT) == 16


def test_process_map_cancel_stops_between_items(
    mgr: WorkerManager, qtbot: QtBot, tmp_path: Path
) -> None:
    restarts = stats(mgr).restarts
    gate = tmp_path / "gate"
    items = [str(gate)] * 20
    # Four chunks on two workers: each runs one and has the next waiting in its pipe.
    handle = mgr.options(pool="proc").map(tasks.wait_for_path_item, items, chunksize=5)
    qtbot.waitUntil(lambda: stats(mgr).busy == 2, timeout=WAIT_MS)
    assert handle.cancel()
    gate.touch()  # item 0 returns; the running chunks see the cancel flag before item 1,
    # the waiting ones skip themselves when they start
    qtbot.waitUntil(lambda: stats(mgr).busy == 0, timeout=WAIT_MS)
    assert stats(mgr).restarts == restarts  # stopped by itself, long before the grace


def test_process_owner_destroyed_cancels_the_running_task(
    mgr: WorkerManager, qtbot: QtBot
) -> None:
    owner = QObject()
    handle = mgr.options(pool="proc", owner=owner).submit(tasks.wait_for_cancel)
    pid = pid_from_status(qtbot, handle)
    owner.deleteLater()
    qtbot.waitUntil(handle.cancelled, timeout=WAIT_MS)
    assert handle.cancel_reason == "owner destroyed"
    qtbot.waitUntil(lambda: stats(mgr).busy == 0, timeout=WAIT_MS)
    assert pid in proc_pool(mgr).worker_pids()


# -- crashes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crash", "expected"),
    [
        ("exit", "exited with code 3"),
        ("segfault", "SIGSEGV"),
        ("killed", "SIGKILL"),
    ],
)
def test_process_crash_fails_only_its_task_and_the_pool_recovers(
    mgr: WorkerManager, qtbot: QtBot, tmp_path: Path, crash: str, expected: str
) -> None:
    before = stats(mgr)
    opts = mgr.options(pool="proc")
    gate = tmp_path / "gate"
    survivor = opts.submit(tasks.wait_for_file, str(gate))  # busy on the other worker
    survivor_pid = pid_from_status(qtbot, survivor)
    victim: TaskHandle[Any]
    if crash == "exit":
        victim = opts.submit(tasks.exit_abruptly)
    elif crash == "segfault":
        victim = opts.submit(tasks.segfault)
    else:
        victim = opts.submit(tasks.wait_for_cancel)
    queued = [opts.submit(tasks.square, x) for x in range(5)]
    if crash == "killed":  # the OS kills it (as the OOM killer would)
        os.kill(pid_from_status(qtbot, victim), signal.SIGKILL)
    with pytest.raises(WorkerCrashedError, match=expected) as info:
        wait_for_handle(victim, WAIT)
    assert repr(victim.name) in str(info.value)
    assert [wait_for_handle(h, WAIT) for h in queued] == [0, 1, 4, 9, 16]  # nothing lost
    gate.touch()
    assert wait_for_handle(survivor, WAIT) == survivor_pid  # its process never noticed
    after = stats(mgr)
    assert after.failed - before.failed == 1
    assert after.succeeded - before.succeeded == 6
    assert after.restarts - before.restarts == 1


def test_process_crash_is_blamed_on_the_chunk_that_was_running(mgr: WorkerManager) -> None:
    # One worker, chunks of one item: chunk 6 already waits in the worker's pipe when
    # chunk 5 kills the process; the error must name chunk 5.
    handle = mgr.options(pool="kill").map(tasks.exit_on_five, range(10), chunksize=1)
    with pytest.raises(WorkerCrashedError, match=r"exited with code 5 while running items 5-5"):
        wait_for_handle(handle, WAIT)


def test_process_crash_in_a_map_fails_the_map_only(mgr: WorkerManager) -> None:
    opts = mgr.options(pool="kill")
    handle = opts.map(os._exit, [5], chunksize=1)
    with pytest.raises(WorkerCrashedError, match=r"items 0-0 of map\(_exit\)"):
        wait_for_handle(handle, WAIT)
    assert wait_for_handle(opts.submit(tasks.square, 3), WAIT) == 9


# -- what cannot cross the process boundary ------------------------------------------------


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_process_submit_refuses_what_cannot_be_pickled(
    make_manager: Callable[..., WorkerManager],
) -> None:
    manager = make_manager()
    opts = manager.options(pool="proc")
    with pytest.raises(
        SerializationError, match=r"the function <function .*<lambda>.*module level"
    ):
        opts.submit(lambda: 1)
    with pytest.raises(SerializationError, match=r"argument 1 \(<unlocked _thread.lock"):
        opts.submit(tasks.square, 1, threading.Lock())
    with pytest.raises(SerializationError, match=r"keyword argument 'holder' \(.*_Holder"):
        opts.submit(tasks.square, holder=_Holder())
    with pytest.raises(SerializationError, match=r"map\(square\).*item 2 \(<unlocked _thread"):
        opts.map(tasks.square, [1, 2, threading.Lock()])
    with pytest.raises(SerializationError, match=r"the function <bound method SquareWorker"):
        opts.start(tasks.SquareWorker())  # a QRunnable subclass cannot travel
    # Refused before anything was queued or started: no task, no thread, no process.
    assert manager.live_tasks() == []
    assert stats(manager).submitted == 0
    assert proc_pool(manager).threads() == []


def test_process_result_or_exception_that_cannot_travel_fails_only_that_task(
    mgr: WorkerManager,
) -> None:
    restarts = stats(mgr).restarts
    opts = mgr.options(pool="proc")
    with pytest.raises(SerializationError, match=r"result of task 'return_a_lock'"):
        wait_for_handle(opts.submit(tasks.return_a_lock), WAIT)
    with pytest.raises(SerializationError, match=r"raised NeedsTwoArgs: 1/2") as info:
        wait_for_handle(opts.submit(tasks.raise_unrebuildable), WAIT)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "NeedsTwoArgs" in info.value.__cause__.text
    assert wait_for_handle(opts.submit(tasks.square, 5), WAIT) == 25
    assert stats(mgr).restarts == restarts


# What CPython's concurrent.futures tests call "deadlocks" (test_deadlock.py): an argument
# or a result whose pickling or unpickling raises, exits or crashes, in the worker or in
# this process.  Each must end its own task with a clear error, and the pool go on.
HOSTILE: dict[str, tuple[Callable[[], tuple[Callable[[Any], Any], Any]], type[Exception], str]] = {
    "argument unpickling raises": (
        lambda: (tasks.identity, tasks.Unpickles(ValueError)),
        SerializationError,
        "could not be loaded in the worker process",
    ),
    "argument unpickling raises SystemExit": (
        lambda: (tasks.identity, tasks.Unpickles(SystemExit)),
        SerializationError,
        "could not be loaded in the worker process",
    ),
    "argument unpickling crashes": (
        lambda: (tasks.identity, tasks.Unpickles(None)),
        WorkerCrashedError,
        "killed by SIGSEGV",
    ),
    "result pickling raises": (
        lambda: (tasks.return_pickles, ValueError),
        SerializationError,
        "cannot be pickled",
    ),
    "result pickling raises SystemExit": (
        lambda: (tasks.return_pickles, SystemExit),
        SerializationError,
        "cannot be pickled",
    ),
    "result pickling crashes": (
        lambda: (tasks.return_pickles, None),
        WorkerCrashedError,
        "killed by SIGSEGV",
    ),
    "result unpickling raises": (
        lambda: (tasks.return_unpickles, ValueError),
        SerializationError,
        "could not be unpickled in the GUI process",
    ),
    "result unpickling raises SystemExit": (
        lambda: (tasks.return_unpickles, SystemExit),
        SerializationError,
        "could not be unpickled in the GUI process",
    ),
    "result unpickling raises KeyboardInterrupt": (
        lambda: (tasks.return_unpickles, KeyboardInterrupt),
        SerializationError,
        "could not be unpickled in the GUI process",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_process_hostile_pickling_fails_only_its_task(mgr: WorkerManager, case: str) -> None:
    make_call, error, message = HOSTILE[case]
    fn, arg = make_call()
    opts = mgr.options(pool="proc")
    with pytest.raises(error, match=message):
        wait_for_handle(opts.submit(fn, arg), WAIT)
    # The pool goes on: its service thread survived, the next task runs.
    assert wait_for_handle(opts.submit(tasks.square, 7), WAIT) == 49


def test_process_service_thread_failure_ends_every_task_and_refuses_new_work(
    make_manager: Callable[..., WorkerManager],
    qtbot: QtBot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault injection: a bug in the service thread must not leave tasks waiting for ever."""
    manager = make_manager(1)
    pool = proc_pool(manager)
    opts = manager.options(pool="proc")
    running = opts.submit(tasks.wait_for_file, str(tmp_path / "never"))
    pid = pid_from_status(qtbot, running)
    queued = opts.submit(tasks.square, 3)

    def broken() -> None:
        raise RuntimeError("a bug in the service thread")

    monkeypatch.setattr(pool, "_dispatch", broken)
    pool._wake()
    for handle in (running, queued):
        with pytest.raises(WorkerCrashedError, match="service thread failed") as info:
            wait_for_handle(handle, WAIT)
        assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ManagerShutdownError, match="stopped working after an internal error"):
        opts.submit(tasks.square, 4)
    assert wait_dead(pid, WAIT)  # its worker did not outlive the failed pool
    assert "the service thread failed" in caplog.text


# -- worker start-up ----------------------------------------------------------------------------


def test_process_timeout_counts_run_time_not_worker_start_up(
    make_manager: Callable[..., WorkerManager],
    qtbot: QtBot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker's start-up lasts until the test says "go" (tmp_path/go).
    monkeypatch.setattr(
        _processworker, "initialize", functools.partial(tasks.gated_initialize, str(tmp_path))
    )
    manager = make_manager(1)
    handle = manager.options(pool="proc", timeout=0.5).submit(tasks.square, 3)
    qtbot.waitUntil(lambda: any(tmp_path.glob("starting-*")), timeout=WAIT_MS)
    # A clock made of the same watchdog: a task with the same timeout, started after
    # the first was handed to its (starting) worker, times out after it would have.
    release = threading.Event()
    clock = manager.options(timeout=0.5).submit(release.wait, WAIT)
    with pytest.raises(TaskTimeoutError):
        wait_for_handle(clock, WAIT)
    release.set()
    assert not handle.done()  # still starting up: its timeout has not begun
    (tmp_path / "go").touch()
    assert wait_for_handle(handle, WAIT) == 9


def test_process_worker_that_dies_starting_up_fails_its_task_and_is_not_respawned(
    make_manager: Callable[..., WorkerManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_processworker, "initialize", tasks.failing_initialize)
    manager = make_manager(1)
    opts = manager.options(pool="proc")
    first, queued = opts.submit(tasks.square, 2), opts.submit(tasks.square, 3)
    for handle in (first, queued):
        with pytest.raises(WorkerCrashedError, match="while starting up") as info:
            wait_for_handle(handle, WAIT)
        assert "__main__" in str(info.value)  # the usual cause, named
    assert stats(manager).restarts == 1  # one doomed process, not one per task or for ever
    monkeypatch.undo()  # the cause is fixed: the next submit starts a worker again
    assert wait_for_handle(opts.submit(tasks.square, 4), WAIT) == 16


def test_process_worker_killed_while_starting_up_is_replaced_then_given_up(
    make_manager: Callable[..., WorkerManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_processworker, "initialize", tasks.killed_initialize)
    monkeypatch.setattr("casare_workers._pools._processresults.MAX_START_KILLS", 2)
    manager = make_manager(1)
    handle = manager.options(pool="proc").submit(tasks.square, 2)
    with pytest.raises(WorkerCrashedError, match="2 worker processes in a row died by a signal"):
        wait_for_handle(handle, WAIT)
    assert stats(manager).restarts == 2  # the first was replaced, the task queued again


def test_process_worker_that_never_finishes_starting_up_is_killed(
    make_manager: Callable[..., WorkerManager], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _processworker, "initialize", functools.partial(tasks.gated_initialize, str(tmp_path))
    )
    monkeypatch.setattr("casare_workers._pools._processresults.START_TIMEOUT", 0.5)
    manager = make_manager(1)
    handle = manager.options(pool="proc").submit(tasks.square, 2)
    with pytest.raises(WorkerCrashedError, match=r"had not started after 0\.5 s"):
        wait_for_handle(handle, WAIT)


@pytest.mark.slow
def test_process_pool_in_an_app_without_a_main_guard_fails_the_task_and_exits(
    tmp_path: Path,
) -> None:
    """docs/asyncio.md's setup copied as is, with pool="cpu" and no __main__ guard."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import qasync
            from PySide6.QtCore import QCoreApplication
            from casare_workers import WorkerManager, attach_loop

            def square(x):
                return x * x

            async def main():
                try:
                    print(await manager.options(pool="cpu").submit(square, 3))
                finally:
                    print("restarts", manager.statistics()["cpu"].restarts, flush=True)

            app = QCoreApplication(sys.argv)
            manager = WorkerManager()
            loop = qasync.QEventLoop(app)
            attach_loop(loop, manager)
            with loop:
                loop.run_until_complete(main())
            """
        )
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CASARE_WORKERS_CPU": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr  # main() raised the task's error
    assert "WorkerCrashedError" in stderr
    assert f"The main module {script} has no" in stderr
    restarts = [line for line in done.stdout.decode().splitlines() if line.startswith("restarts")]
    assert restarts[-1] == "restarts 1"  # the GUI process's own line comes last


# -- shutting down, idling, sizing ----------------------------------------------------------


def test_process_shutdown_kills_stuck_workers_and_leaves_nothing(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot
) -> None:
    manager = make_manager(2, cancel_grace=60)
    opts = manager.options(pool="proc")
    handles: list[TaskHandle[Any]] = [opts.submit(tasks.ignore_cancel) for _ in range(2)]
    for handle in handles:
        pid_from_status(qtbot, handle)
    handles.append(opts.submit(tasks.square, 2))  # queued behind them
    report = manager.shutdown(0.5)
    assert report.cancelled == 3
    assert report.still_running == ()
    assert all(h.cancel_reason == "shutdown" for h in handles)
    assert proc_pool(manager).worker_pids() == []
    assert manager.threads() == []


def test_process_shutdown_without_cancel_lets_queued_work_finish(
    make_manager: Callable[..., WorkerManager],
) -> None:
    manager = make_manager(1)
    handles = [manager.options(pool="proc").submit(tasks.square, x) for x in range(4)]
    report = manager.shutdown(WAIT, cancel_pending=False)
    assert report.cancelled == 0
    assert [h.result(0) for h in handles] == [0, 1, 4, 9]


def test_process_idle_workers_exit_after_the_idle_timeout(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot
) -> None:
    manager = make_manager(1, idle_timeout=0.2)
    assert wait_for_handle(manager.options(pool="proc").submit(tasks.square, 2), WAIT) == 4
    qtbot.waitUntil(lambda: stats(manager).workers == 0, timeout=WAIT_MS)
    assert manager.threads() != []  # the service thread stays, without a process
    # ... and the next task starts a new process.
    assert wait_for_handle(manager.options(pool="proc").submit(tasks.square, 3), WAIT) == 9


def test_process_retired_worker_that_cannot_exit_is_killed(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    """A task left a non-daemon thread behind: its idle worker is killed, the pool goes on."""
    manager = make_manager(1, idle_timeout=0.2)
    opts = manager.options(pool="proc")
    stuck_pid = wait_for_handle(opts.submit(tasks.leave_a_thread_running), WAIT)
    qtbot.waitUntil(lambda: stats(manager).workers == 0, timeout=WAIT_MS)  # retired
    # The service thread is not stuck joining that process: new work gets a new worker.
    assert wait_for_handle(opts.submit(tasks.child_facts), WAIT)[0] != stuck_pid
    assert wait_dead(stuck_pid, WAIT), "the worker that could not exit is still running"
    assert f"pid {stuck_pid}" in caplog.text
    assert "non-daemon thread" in caplog.text


def test_process_shutdown_kills_a_worker_that_cannot_exit(
    make_manager: Callable[..., WorkerManager],
) -> None:
    manager = make_manager(1)
    stuck_pid = wait_for_handle(
        manager.options(pool="proc").submit(tasks.leave_a_thread_running), WAIT
    )
    report = manager.shutdown(0.5)
    assert report.still_running == ()
    assert manager.threads() == []  # the service thread ended within the shutdown
    assert not pid_alive(stuck_pid)


# The shutdown scenarios of CPython's concurrent.futures tests (test_shutdown.py), as
# they apply here: every task ends, nothing hangs, no process is left.


def test_process_shutdown_right_after_a_cancelled_submit_does_not_hang(
    make_manager: Callable[..., WorkerManager],
) -> None:
    manager = make_manager(1)
    opts = manager.options(pool="proc")
    assert wait_for_handle(opts.submit(tasks.square, 2), WAIT) == 4  # a warm worker
    opts.submit(tasks.square, 3).cancel()
    report = manager.shutdown(WAIT)
    assert report.clean
    assert proc_pool(manager).worker_pids() == []


def test_process_shutdown_at_once_after_a_failed_task(
    make_manager: Callable[..., WorkerManager], caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager(2)
    with pytest.raises(ValueError, match="boom"):
        wait_for_handle(manager.options(pool="proc").submit(tasks.raise_value_error, "boom"), WAIT)
    report = manager.shutdown(0)
    assert report.still_running == ()
    assert manager.threads() == []
    assert proc_pool(manager).worker_pids() == []
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


def test_process_shutdown_cancels_the_queue_and_every_task_ends(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot, tmp_path: Path
) -> None:
    manager = make_manager(1)
    opts = manager.options(pool="proc")
    running = opts.submit(tasks.wait_for_file, str(tmp_path / "never"))
    pid_from_status(qtbot, running)
    queued = [opts.submit(tasks.square, x) for x in range(50)]
    report = manager.shutdown(WAIT)
    assert report.cancelled == 51
    assert report.clean  # the running call saw ctx.cancelled and returned
    handles = [running, *queued]
    assert all(h.cancelled() and h.cancel_reason == "shutdown" for h in handles)


def test_process_manager_destroyed_without_shutdown_leaves_no_process(qapp: Any) -> None:
    manager = WorkerManager(pools={"proc": PoolConfig(1, kind="process")})
    pid = wait_for_handle(manager.options(pool="proc").submit(tasks.child_facts), WAIT)[0]
    shiboken6.delete(manager)  # the QObject goes without a shutdown: its pools stop
    assert wait_dead(pid, WAIT)


def test_default_cpu_pool_is_a_lazy_process_pool(manager: WorkerManager) -> None:
    cpu = stats(manager, "cpu")
    assert cpu.kind == "process"
    assert cpu.max_workers == max(1, (os.cpu_count() or 1) - 1)
    assert cpu.workers == 0  # nothing is started before the first task
    assert manager.threads() == []


def test_size_for_memory_follows_the_seed_rule() -> None:
    gib = 2**30
    assert size_for_memory(8, gib, 3 * gib) == 2  # 3 GiB / (1 GiB * 1.5)
    assert size_for_memory(2, gib, 30 * gib) == 2  # never more than asked
    assert size_for_memory(8, 4 * gib, gib) == 1  # never fewer than one
    assert size_for_memory(8, None, gib) == 8
    assert size_for_memory(8, gib, None) == 8  # unknown memory: no cap


def test_memory_per_worker_caps_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("casare_workers._pools._processpool.available_memory", lambda: 3 * 2**30)
    pool = ProcessPool("p", PoolConfig(8, kind="process", memory_per_worker=2**30))
    assert pool.max_workers == 2


@pytest.mark.slow
def test_process_exit_without_shutdown_does_not_hang(tmp_path: Path) -> None:
    """An app that never shuts its manager down must still exit (no stuck worker join)."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            from PySide6.QtCore import QCoreApplication
            from casare_workers import PoolConfig, WorkerManager

            def stuck(ctx):
                ctx.status("running")
                threading.Event().wait()

            if __name__ == "__main__":
                app = QCoreApplication([])
                manager = WorkerManager(pools={"p": PoolConfig(1, kind="process")})
                handle = manager.options(pool="p").submit(stuck)
                while handle.status_text is None:
                    app.processEvents()
                print("worker running; exiting without shutdown", flush=True)
            """
        )
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"exiting without shutdown" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("shut_down", [False, True], ids=["no shutdown", "shutdown"])
def test_process_exit_with_a_worker_that_cannot_exit_does_not_hang(
    tmp_path: Path, shut_down: bool
) -> None:
    """A worker held up by a task's non-daemon thread must not hold the interpreter's exit."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, threading
            from PySide6.QtCore import QCoreApplication
            from casare_workers import PoolConfig, WorkerManager

            def leave_a_thread_running():
                threading.Thread(target=threading.Event().wait).start()
                return os.getpid()

            if __name__ == "__main__":
                app = QCoreApplication([])
                manager = WorkerManager(pools={{"p": PoolConfig(1, kind="process")}})
                handle = manager.options(pool="p").submit(leave_a_thread_running)
                while not handle.done():
                    app.processEvents()
                print(handle.result(0), flush=True)
                if {shut_down}:
                    report = manager.shutdown(1)
                    print(report.clean, len(manager.threads()), flush=True)
            """
        )
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().split()
    assert wait_dead(int(lines[0]), WAIT), "the worker outlived the application"
    if shut_down:
        assert lines[1:] == ["True", "0"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
def test_process_worker_exits_when_the_gui_process_is_killed(tmp_path: Path) -> None:
    """A worker stuck in a task must not outlive a GUI process that was killed."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, threading
            from PySide6.QtCore import QCoreApplication
            from casare_workers import PoolConfig, WorkerManager

            def stuck(ctx):
                ctx.status(str(os.getpid()))
                threading.Event().wait()

            if __name__ == "__main__":
                app = QCoreApplication([])
                manager = WorkerManager(pools={"p": PoolConfig(1, kind="process")})
                handle = manager.options(pool="p").submit(stuck)
                while handle.status_text is None:
                    app.processEvents()
                print(handle.status_text, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    worker = int(done.stdout)
    try:
        fd = os.pidfd_open(worker)
    except ProcessLookupError:
        return  # already gone
    try:
        readable, _, _ = select.select([fd], [], [], WAIT)  # readable once it has exited
        assert readable, f"worker {worker} outlived its killed GUI process"
    finally:
        os.close(fd)


def test_asyncify_on_a_module_level_function_runs_in_a_worker_process(
    mgr: WorkerManager, qasync_loop: Any
) -> None:
    # @asyncify(pool="cpu") replaced the module attribute, and pickling the original
    # function by name failed with SerializationError ("not the same object").
    from casare_workers import set_default_manager

    set_default_manager(mgr)
    try:
        value = qasync_loop.run(tasks.asyncified_square(7))
    finally:
        set_default_manager(None)
    assert value == (49, True)  # ran in a worker process, with its ctx
