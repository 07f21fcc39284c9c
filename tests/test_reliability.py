"""Nothing is lost, nothing is delivered twice, nothing leaks, nothing hangs.

The heavier cases carry the ``slow`` marker (CI runs them; deselect locally with
``-m 'not slow'``).  Figures for the closing note (docs/reliability.md): each slow case
prints the tasks run, the faults injected and what was lost or duplicated::

    QT_QPA_PLATFORM=offscreen pytest tests/test_reliability.py -m slow -s
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread
from PySide6.QtWidgets import QApplication, QWidget

from casare_workers import (
    JobContext,
    LongJob,
    ManagerShutdownError,
    PoolConfig,
    TaskContext,
    TaskHandle,
    WorkerCrashedError,
    WorkerManager,
)
from casare_workers._pools._processpool import ProcessPool
from casare_workers.pytest_plugin import wait_for_handle
from tests import reliability_tasks
from tests.processes import pid_alive, wait_dead


class Ledger:
    """Counts every terminal signal and every finished per task, checking their order."""

    def __init__(self) -> None:
        self.terminal: Counter[int] = Counter()
        self.finished: Counter[int] = Counter()
        self.order_errors: list[str] = []

    def watch_signals(self, handle: TaskHandle[Any]) -> None:
        sig = handle.signals
        task_id = handle.id
        sig.result.connect(lambda value: self._terminal(task_id))
        sig.error.connect(lambda error: self._terminal(task_id))
        sig.cancelled.connect(lambda: self._terminal(task_id))
        sig.finished.connect(lambda: self._finished(task_id))

    def watch_then(self, handle: TaskHandle[Any], context: QObject | None = None) -> None:
        task_id = handle.id
        handle.then(
            lambda value: self._terminal(task_id),
            lambda error: self._terminal(task_id),
            lambda: self._terminal(task_id),
            context=context,
        )

    def _terminal(self, task_id: int) -> None:
        self.terminal[task_id] += 1

    def _finished(self, task_id: int) -> None:
        if self.terminal[task_id] != 1:
            self.order_errors.append(f"task {task_id}: finished before its outcome")
        self.finished[task_id] += 1


def _work(kind: str, ctx: TaskContext) -> str:
    if kind == "error":
        raise ValueError("planned failure")
    if kind == "wait":  # long enough to be cancelled, superseded or timed out while running
        ctx.wait(0.02)
        ctx.raise_if_cancelled()
    if kind == "progress":
        for i in range(50):
            ctx.progress(i + 1, 50)
    return kind


@pytest.mark.slow
@pytest.mark.timeout(420)  # about 1 min here; the run's own bound is wait_for_done(300)
def test_load_100k_tasks_end_exactly_once_and_nothing_leaks(
    qapp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(20261128)
    ledger = Ledger()
    # "cpu" is a process pool by default; this test is about the thread pools (the
    # process pool has its chaos test below).
    manager = WorkerManager(pools={"io": 8, "cpu": PoolConfig(2), "background": 4, "extra": 3})
    pools = manager.pool_names
    refs: list[weakref.ref[TaskHandle[Any]]] = []
    signal_ids: set[int] = set()
    cancelled_by_us = 0
    total = 100_000
    kinds = ["ok"] * 6 + ["error", "progress", "wait"]
    for i in range(total):
        kind = rng.choice(kinds)
        roll = rng.random()
        opts = manager.options(
            pool=rng.choice(pools),
            priority=rng.choice((0, 0, 0, 1, -1)),
            timeout=0.005 if kind == "wait" and roll < 0.2 else None,
            key=("search", i % 97) if roll > 0.9 else None,
        )
        handle = opts.submit(_work, kind)
        if rng.random() < 0.2:
            ledger.watch_signals(handle)
            signal_ids.add(handle.id)
        else:
            ledger.watch_then(handle)
        if rng.random() < 0.03:
            cancelled_by_us += handle.cancel()
        refs.append(weakref.ref(handle))
        del handle
        if i % 1000 == 0:
            QCoreApplication.processEvents()
    assert manager.wait_for_done(300)
    stats = manager.statistics()
    totals = Counter[str]()
    for pool in stats.pools.values():
        for field in ("submitted", "succeeded", "failed", "cancelled", "queued", "running"):
            totals[field] += getattr(pool, field)
    lost = [r for r in refs if (h := r()) is not None and ledger.terminal[h.id] == 0]
    duplicated = [tid for tid, n in ledger.terminal.items() if n > 1]
    missing_finished = [tid for tid in signal_ids if ledger.finished[tid] != 1]
    report = manager.shutdown(5)
    gc.collect()
    alive = sum(1 for r in refs if r() is not None)
    with capsys.disabled():
        print(
            f"\nload: {total} tasks, {cancelled_by_us} cancelled by the test, "
            f"{totals['failed']} failed (planned errors and timeouts), "
            f"{totals['cancelled']} cancelled (incl. supersedes); "
            f"lost {len(lost)}, duplicated {len(duplicated)}"
        )
    assert len(ledger.terminal) == total
    assert lost == []
    assert duplicated == []
    assert missing_finished == []
    assert ledger.order_errors == []
    assert totals["submitted"] == total
    assert totals["succeeded"] + totals["failed"] + totals["cancelled"] == total
    assert totals["queued"] == totals["running"] == 0
    assert report.clean
    assert alive == 0  # no handle (nor its signals QObject) outlives its delivery


@pytest.mark.slow
def test_submits_from_16_threads_and_the_gui_thread_are_all_delivered(
    qapp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    barrier = threading.Barrier(17, timeout=10)
    delivered: Counter[int] = Counter()
    per_thread = 500
    with WorkerManager() as manager:
        handles: list[TaskHandle[int]] = []
        lock = threading.Lock()

        def submitter(base: int) -> None:
            barrier.wait()
            mine = [manager.submit(int, str(base + i)) for i in range(per_thread)]
            for handle in mine:
                handle.then(lambda v: delivered.update([v]))
            with lock:
                handles.extend(mine)

        threads = [
            threading.Thread(target=submitter, args=(n * per_thread,)) for n in range(1, 17)
        ]
        for thread in threads:
            thread.start()
        barrier.wait()
        gui = [
            manager.submit(int, str(i)).then(lambda v: delivered.update([v]))
            for i in range(per_thread)
        ]
        for thread in threads:
            thread.join(30)
        assert manager.wait_for_done(60)
    total = 17 * per_thread
    with capsys.disabled():
        print(
            f"\nsubmits from 16 threads + the GUI thread: {total} tasks; lost "
            f"{total - len(delivered)}, duplicated {sum(n > 1 for n in delivered.values())}"
        )
    assert sorted(delivered) == list(range(17 * per_thread))
    assert set(delivered.values()) == {1}
    assert len(handles) + len(gui) == 17 * per_thread


@pytest.mark.slow
def test_a_saturated_pool_under_submits_and_cancels_from_many_threads_stays_exact(
    qapp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two threads kept busy by 8 submitting threads and the GUI thread: submits often
    # find the pool's lock taken with every thread running and go through the inbox.
    per_thread, submitters = 2000, 8
    total = (submitters + 1) * per_thread
    ended: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    record_lock = threading.Lock()
    barrier = threading.Barrier(submitters + 1, timeout=10)

    def record(key: int, outcome: str) -> None:
        with record_lock:
            ended.update([key])
            outcomes.update([outcome])

    def on_result(key: int, _value: int) -> None:
        record(key, "result")

    def submit_all(manager: WorkerManager, base: int) -> list[TaskHandle[int]]:
        barrier.wait()
        mine = []
        for i in range(per_thread):
            key = base + i
            handle = manager.submit(abs, -key)
            handle.then(
                functools.partial(on_result, key),
                on_cancelled=functools.partial(record, key, "cancelled"),
            )
            if i % 7 == 0:
                handle.cancel()
            mine.append(handle)
        return mine

    with WorkerManager(pools={"io": 2}) as manager:
        results: list[list[TaskHandle[int]]] = []
        threads = [
            threading.Thread(
                target=lambda n=n: results.append(submit_all(manager, n * per_thread))
            )
            for n in range(1, submitters + 1)
        ]
        for thread in threads:
            thread.start()
        results.append(submit_all(manager, 0))
        for thread in threads:
            thread.join(60)
        assert manager.wait_for_done(120)
        stats = manager.statistics()["io"]
    with capsys.disabled():
        print(
            f"\nsaturated pool: {total} tasks from {submitters} threads + the GUI thread on 2 "
            f"threads, {outcomes['cancelled']} cancelled; lost {total - len(ended)}, "
            f"duplicated {sum(n > 1 for n in ended.values())}"
        )
    assert sorted(ended) == list(range(total))
    assert set(ended.values()) == {1}
    assert sum(len(r) for r in results) == total
    assert (stats.submitted, stats.queued, stats.running) == (total, 0, 0)
    assert stats.succeeded == outcomes["result"]
    assert stats.cancelled == outcomes["cancelled"]
    assert stats.failed == 0


@pytest.mark.slow
def test_owners_deleted_with_1000_tasks_in_flight(
    qapp: Any, make_gate: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    release = make_gate()
    touched: list[str] = []
    ledger = Ledger()
    with WorkerManager(pools={"io": 4}) as manager:
        widgets = [QWidget() for _ in range(10)]
        for widget in widgets:
            opts = manager.options(owner=widget)

            def touch(*_: object, w: QWidget = widget) -> None:
                touched.append(w.objectName())  # would raise if w were deleted

            for i in range(100):
                handle: TaskHandle[Any] = (
                    opts.submit(release.wait) if i < 2 else opts.submit(int, str(i))
                )
                handle.then(touch, touch, touch)
                handle.signals.finished.connect(touch)
                # With an explicit, live context a continuation still learns the outcome
                # of an orphaned task: that is how every task is counted here.
                ledger.watch_then(handle, context=manager)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for widget in widgets:
                widget.deleteLater()
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            release.open()
            assert manager.wait_for_done(30)
        stats = manager.statistics()["io"]
        assert stats.submitted == 1000
        assert stats.succeeded + stats.failed + stats.cancelled == 1000
    duplicated = sum(n > 1 for n in ledger.terminal.values())
    with capsys.disabled():
        print(
            f"\nowners deleted: 10 owners deleted with 1000 tasks in flight; "
            f"{stats.succeeded} completed first, {stats.cancelled} cancelled; callbacks run "
            f"for a deleted owner {len(touched)}; lost {1000 - len(ledger.terminal)}, "
            f"duplicated {duplicated}"
        )
    assert len(ledger.terminal) == 1000
    assert duplicated == 0
    assert touched == []  # nothing ran for a deleted widget


# -- exceptions in user code the library calls -------------------------------------------
#
# Each case connects a faulty callback of one kind.  Slots connected to Qt signals report
# through ``sys.excepthook`` (PySide's channel, which pytest-qt and app-wide hooks see);
# callbacks the library calls itself are logged by the ``casare_workers`` logger.  Either
# way: exactly one report, and the next task is delivered as usual.  Covered elsewhere:
# async slots (bridge/test_slots, ``sys.excepthook`` or ``on_error``), LoopThread initializers
# and finalizers (test_loopthread), ``run_process``'s ``on_line`` (test_subprocess).

BUG = "bug in user code"


def _bug(*_: object) -> None:
    raise RuntimeError(BUG)


def _reports_progress(ctx: TaskContext) -> int:
    ctx.status("half way")
    ctx.progress(1, 2)
    return 7


def _fails() -> None:
    raise ValueError("the task's own error")


def _job_with_progress(ctx: JobContext) -> int:
    ctx.progress(1, 1)
    return 7


def _slot(signal: str, fn: Any = _reports_progress) -> Any:
    def arrange(manager: WorkerManager, gate: Any) -> Any:
        handle = manager.submit(fn)
        getattr(handle.signals, signal).connect(_bug)
        return handle

    return arrange


def _then(outcome: str) -> Any:
    def arrange(manager: WorkerManager, gate: Any) -> Any:
        if outcome == "result":
            return manager.submit(int, "7").then(_bug)
        if outcome == "error":
            return manager.submit(_fails).then(None, _bug)
        handle = manager.submit(gate.wait)
        handle.then(None, None, _bug)
        handle.cancel()
        return handle

    return arrange


def _done_callback(manager: WorkerManager, gate: Any) -> Any:
    handle = manager.submit(int, "7")
    handle.add_done_callback(_bug)
    return handle


def _manager_signal(manager: WorkerManager, gate: Any) -> Any:
    handle = manager.submit(int, "7")
    manager.task_finished.connect(lambda task: _bug() if task is handle else None)
    return handle


def _job_signal(signal: str) -> Any:
    def arrange(manager: WorkerManager, gate: Any) -> Any:
        job: LongJob[int] = LongJob(_job_with_progress, manager=manager)
        getattr(job, signal).connect(_bug)
        job.start()
        return job

    return arrange


USER_CALLBACKS = {
    "result slot": ("excepthook", _slot("result")),
    "error slot": ("excepthook", _slot("error", _fails)),
    "progress slot": ("excepthook", _slot("progress")),
    "status slot": ("excepthook", _slot("status")),
    "finished slot": ("excepthook", _slot("finished")),
    "then on_result": ("log", _then("result")),
    "then on_error": ("log", _then("error")),
    "then on_cancelled": ("log", _then("cancelled")),
    "done callback": ("log", _done_callback),
    "manager task_finished slot": ("excepthook", _manager_signal),
    "long job result slot": ("excepthook", _job_signal("result")),
    "long job progress slot": ("excepthook", _job_signal("progress")),
}


@pytest.mark.parametrize("kind", list(USER_CALLBACKS))
def test_exception_in_user_callback_is_reported_once_and_delivery_goes_on(
    manager: WorkerManager, qtbot: Any, caplog: pytest.LogCaptureFixture, gate: Any, kind: str
) -> None:
    channel, arrange = USER_CALLBACKS[kind]
    with qtbot.capture_exceptions() as hooked, caplog.at_level(logging.ERROR, "casare_workers"):
        arrange(manager, gate)
        assert manager.wait_for_done(30)
        after = manager.submit(int, "8")  # the engine goes on
        assert wait_for_handle(after, 30) == 8
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info and r.name == "casare_workers"]
    reported = {"excepthook": [e[1] for e in hooked], "log": logged}
    assert [str(e) for e in reported[channel]] == [BUG]
    assert [str(e) for e in reported["log" if channel == "excepthook" else "excepthook"]] == []


def test_exception_in_a_continuation_on_another_thread_is_logged_once(
    manager: WorkerManager, qtbot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    thread = QThread()
    receiver = QObject()
    receiver.moveToThread(thread)
    thread.start()
    ran = threading.Event()

    def bad(value: int) -> None:
        ran.set()
        raise RuntimeError(BUG)

    try:
        with caplog.at_level(logging.ERROR, "casare_workers"):
            manager.submit(int, "7").then(bad, context=receiver)
            assert manager.wait_for_done(30)
            assert ran.wait(30)
            qtbot.waitUntil(  # logged just after, over there
                lambda: any(r.name == "casare_workers" for r in caplog.records)
            )
            assert wait_for_handle(manager.submit(int, "8"), 30) == 8
    finally:
        thread.quit()
        thread.wait(5000)
    logged = [r for r in caplog.records if r.exc_info and r.name == "casare_workers"]
    assert [str(r.exc_info[1]) for r in logged if r.exc_info] == [BUG]


def test_warnings_in_worker_threads_reach_the_warnings_machinery(manager: WorkerManager) -> None:
    hook = warnings.showwarning

    def noisy() -> str:
        warnings.warn("from a worker thread", UserWarning, stacklevel=1)
        return "done"

    with pytest.warns(UserWarning, match="from a worker thread"):
        assert wait_for_handle(manager.submit(noisy), 30) == "done"
    assert warnings.showwarning is hook  # the library installed no hook of its own


def test_a_warning_turned_error_fails_only_its_task(manager: WorkerManager) -> None:
    def noisy() -> None:
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning, match="deprecated thing"):
            wait_for_handle(manager.submit(noisy), 30)
    assert wait_for_handle(manager.submit(int, "3"), 30) == 3


@pytest.mark.slow
def test_quit_with_stuck_tasks_exits_promptly_and_cleanly() -> None:
    script = textwrap.dedent(
        """
        import sys, threading, time
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from casare_workers import WorkerManager
        app = QApplication([])
        manager = WorkerManager(shutdown_timeout=1.0)
        never = threading.Event()
        started = threading.Barrier(4, timeout=10)
        def stuck():
            started.wait()
            never.wait()          # ignores cancellation: a hung OCR call, a 300 s OAuth wait
        for _ in range(3):
            manager.submit(stuck)
        for _ in range(50):
            manager.submit(never.wait)  # queued behind them
        quit_at = []
        def quit_when_running():
            started.wait()
            quit_at.append(time.monotonic())
            app.quit()                  # aboutToQuit -> manager.shutdown(1.0)
        QTimer.singleShot(0, quit_when_running)
        app.exec()
        print("exec returned", flush=True)
        print(f"shutdown took {time.monotonic() - quit_at[0]:.2f}", flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr
    assert "exec returned" in result.stdout
    took = float(result.stdout.split("shutdown took ")[1])
    assert took < 1.0 + 1.0  # the acceptance bound: the shutdown timeout + 1 s
    assert "QThread: Destroyed" not in result.stderr
    assert "Fatal" not in result.stderr


#: Faults injected into the 2 000-task chaos batch, of each kind: tasks that call
#: ``os._exit``, tasks that segfault, tasks killed by SIGKILL from outside while they
#: run, and SIGKILLs sent from outside to a random worker at a random moment (start-up,
#: idle, or in the middle of any task).
FAULTS_PER_KIND = 6


@pytest.mark.slow
@pytest.mark.timeout(240)  # 20-30 s here; the run's own bound is wait_for_done(120)
def test_process_pool_chaos_every_task_completes_or_fails_with_a_crash(
    qapp: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Workers die at random under a batch: nothing is lost, nothing is run or delivered twice."""
    rng = random.Random(20260707)
    total = 2000
    faults = ["ok"] * total
    planned = rng.sample(range(total), 3 * FAULTS_PER_KIND)
    for n, index in enumerate(planned):
        faults[index] = ("exit", "segfault", "victim")[n % 3]
    runs_file = tmp_path / "runs"
    runs_file.touch()
    before = set(multiprocessing.active_children())
    manager = WorkerManager(pools={"chaos": PoolConfig(2, kind="process")}, shutdown_timeout=10)
    pool = manager._core.pools["chaos"]
    assert isinstance(pool, ProcessPool)
    ledger = Ledger()
    opts = manager.options(pool="chaos")
    began = time.monotonic()
    handles: list[TaskHandle[int]] = []
    for i in range(total):
        handle = opts.submit(reliability_tasks.chaos, i, faults[i], str(runs_file))
        if i % 10 == 0:
            ledger.watch_signals(handle)
        else:
            ledger.watch_then(handle)
        handles.append(handle)

    stop = threading.Event()
    victim_kills: list[int] = []
    random_kills: list[int] = []
    # A random kill may reach a victim's process between its line and the killer reading
    # it; the victim's process is then gone already (its task still fails with SIGKILL).
    victims_gone: list[int] = []

    def kill(pid: int, into: list[int], gone: list[int] | None = None) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            if gone is not None:
                gone.append(pid)
            return
        into.append(pid)

    def killer() -> None:
        # Reads the runs file as it grows: a victim's line names the process to kill.
        # The random kills' timing is the injection's randomness, not synchronisation:
        # every assertion below holds wherever they land.
        pace = random.Random(11)
        pending = ""
        with open(runs_file, encoding="ascii") as runs:
            while not stop.wait(0.01):
                pending += runs.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    _, pid, fault = line.split()
                    if fault == "victim":
                        kill(int(pid), victim_kills, victims_gone)
                if len(random_kills) < FAULTS_PER_KIND and pace.random() < 0.02:
                    pids = pool.worker_pids()
                    if pids:
                        kill(pace.choice(pids), random_kills)

    thread = threading.Thread(target=killer, name="chaos-killer")
    thread.start()
    try:
        assert manager.wait_for_done(120), f"not delivered: {manager.live_tasks()[:5]}"
    finally:
        stop.set()
        thread.join(10)
    elapsed = time.monotonic() - began

    completed = killed_by_chance = healthy_killed = 0
    for index, (handle, fault) in enumerate(zip(handles, faults, strict=True)):
        exc = handle.exception(0)
        if exc is None:
            assert fault == "ok", f"task {index} ({fault}) completed"
            assert handle.result(0) == index
            completed += 1
            continue
        assert isinstance(exc, WorkerCrashedError), f"task {index} ({fault}): {exc!r}"
        expected = {"exit": "exited with code 7", "segfault": "SIGSEGV", "victim": "SIGKILL"}
        if fault == "ok" or expected[fault] not in str(exc):
            assert "SIGKILL" in str(exc), f"task {index} ({fault}): {exc}"
            killed_by_chance += 1  # a random kill got there first
            healthy_killed += fault == "ok"
    runs = Counter(int(line.split()[0]) for line in runs_file.read_text().splitlines())
    ran_twice = sorted(index for index, n in runs.items() if n > 1)
    lost = [h.id for h in handles if ledger.terminal[h.id] == 0]
    duplicated = [tid for tid, n in ledger.terminal.items() if n > 1]
    stats = manager.statistics()["chaos"]
    report = manager.shutdown(10)
    injected = 2 * FAULTS_PER_KIND + len(victim_kills) + len(random_kills)
    with capsys.disabled():
        print(
            f"\nprocess chaos: {total} tasks on 2 worker processes; faults injected: "
            f"{injected} ({FAULTS_PER_KIND} os._exit, {FAULTS_PER_KIND} segfaults, "
            f"{len(victim_kills)} SIGKILLs of running tasks, {len(random_kills)} SIGKILLs "
            f"at random moments); {completed} completed, {total - completed} failed with "
            f"WorkerCrashedError, {stats.restarts} worker restarts; lost {len(lost)}, "
            f"duplicated {len(duplicated)}, ran twice {len(ran_twice)}; {elapsed:.1f} s"
        )
    assert lost == []
    assert duplicated == []
    assert ran_twice == []
    assert ledger.order_errors == []
    assert [tid for tid, n in ledger.finished.items() if n != 1] == []
    # Every victim that began was killed (by the killer, or by a random kill first); a
    # random kill can also take a victim down before it begins (it then fails with
    # SIGKILL all the same, checked above), so "began" may be fewer than all six.
    victims_began = sum(line.endswith(" victim") for line in runs_file.read_text().splitlines())
    assert len(victim_kills) + len(victims_gone) == victims_began
    assert victim_kills, "no victim was killed from outside: the injection did not happen"
    assert total - completed == 3 * FAULTS_PER_KIND + healthy_killed
    assert killed_by_chance <= len(random_kills)  # nothing else fails a healthy task
    assert all(runs[i] == 1 for i, h in enumerate(handles) if h.exception(0) is None)
    assert stats.submitted == total
    assert stats.succeeded == completed
    assert stats.failed == total - completed
    assert stats.cancelled == stats.queued == stats.running == 0
    assert stats.restarts >= 3 * FAULTS_PER_KIND
    assert report.clean
    assert manager.threads() == []
    assert set(multiprocessing.active_children()) <= before  # no worker outlives the pool


# A command that ignores SIGTERM and starts a grandchild that ignores it too; each prints
# its pid (through the same pipe) and waits for ever.
_DEAF_CHILD = """
import os, signal, subprocess, sys, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[1:] != ["grandchild"]:
    subprocess.Popen([sys.executable, "-u", __file__, "grandchild"])
print("pid", os.getpid(), flush=True)
threading.Event().wait()
"""

# The application: everything runs when it quits (a line on stdin stands for the user
# closing the main window).  Task functions for the process pool are at module level
# and the entry point is guarded, as the "cpu" pool's spawned workers require.
_QUIT_APP = """
import asyncio, os, sys, threading
import qasync
from PySide6.QtCore import QSocketNotifier, QTimer
from PySide6.QtWidgets import QApplication
from casare_workers import (
    LongJob, LoopThread, PoolConfig, SubprocessJob, WorkerManager, attach_loop,
)

def stuck_in_a_process(ctx):
    ctx.status(str(os.getpid()))
    threading.Event().wait()  # never looks at ctx: only killing the process ends it

def main():
    shutdown_timeout, deaf_child = float(sys.argv[1]), sys.argv[2]
    app = QApplication(sys.argv[:1])
    manager = WorkerManager(
        pools={"background": 3, "cpu": PoolConfig(2, kind="process", cancel_grace=60)},
        shutdown_timeout=shutdown_timeout,
    )
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    attach_loop(loop, manager)  # asyncio.to_thread runs on the manager's "io" pool
    never = threading.Event()
    started = []

    def stuck():  # a hung OCR call: ignores cancellation
        started.append("thread task")
        never.wait()

    background = manager.options(pool="background")
    for _ in range(3):
        background.submit(stuck)
    for _ in range(20):
        background.submit(never.wait)  # queued behind them

    def cooperative_job(ctx):
        started.append("cooperative job")
        while not ctx.wait(0.05):
            pass

    def deaf_job(ctx):
        started.append("deaf job")
        never.wait()

    async def async_job(ctx):
        started.append("async job")
        await asyncio.sleep(3600)

    for work in (cooperative_job, deaf_job, async_job):
        LongJob(work, manager=manager).start()
    child_pids = []
    subprocess_job = SubprocessJob([sys.executable, "-u", deaf_child], manager=manager)
    subprocess_job.line.connect(lambda text, _: child_pids.append(text.split()[1]))
    subprocess_job.start()
    cpu = manager.options(pool="cpu")
    in_processes = [cpu.submit(stuck_in_a_process) for _ in range(2)]
    for _ in range(5):
        cpu.submit(stuck_in_a_process)  # queued
    LoopThread("sleeper").submit(asyncio.sleep, 3600)

    def to_thread_work():
        started.append("to_thread")
        never.wait()

    async def calls_to_thread():
        await asyncio.to_thread(to_thread_work)

    asyncio.ensure_future(calls_to_thread())

    def report_when_running():
        if len(started) == 7 and len(child_pids) == 2 and all(
            h.status_text for h in in_processes
        ):
            print("running", flush=True)
        else:
            QTimer.singleShot(10, report_when_running)

    QTimer.singleShot(0, report_when_running)
    user = QSocketNotifier(sys.stdin.fileno(), QSocketNotifier.Type.Read)
    user.activated.connect(app.quit)  # aboutToQuit -> manager.shutdown()
    with loop:
        loop.run_forever()
    print("event loop closed", flush=True)

if __name__ == "__main__":
    main()
"""


def _process_tree(root: int) -> list[int]:
    """Every descendant of process ``root`` (Linux: the ``/proc`` parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # it ended meanwhile
                continue
            children.setdefault(parent, []).append(int(entry))
    tree: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            tree.append(child)
            todo.append(child)
    return tree


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="reads the process tree in /proc")
def test_quit_with_everything_running_exits_in_time_and_leaves_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stuck threads, long jobs, a deaf subprocess tree, process work, a stuck to_thread."""
    shutdown_timeout = 1.0
    app = tmp_path / "app.py"
    app.write_text(_QUIT_APP)
    deaf = tmp_path / "deaf.py"
    deaf.write_text(_DEAF_CHILD)
    process = subprocess.Popen(
        [sys.executable, str(app), str(shutdown_timeout), str(deaf)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    tree: list[int] = []
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the app never reported that everything runs"
        assert process.stdout.readline() == "running\n", process.stderr.read()
        tree = _process_tree(process.pid)
        process.stdin.write("quit\n")
        process.stdin.flush()
        quit_at = time.monotonic()
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - quit_at
        survivors = [pid for pid in tree if not wait_dead(pid, 5)]
    finally:
        for pid in [process.pid, *tree]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)  # never leave a process behind, even on failure
    with capsys.disabled():
        print(
            f"\nquit with everything running: {len(tree)} processes in the tree "
            f"(subprocess child and grandchild ignoring SIGTERM, 2 worker processes and "
            f"the resource tracker); exited {took:.2f} s after quit (shutdown timeout "
            f"{shutdown_timeout} s); {len(survivors)} left running"
        )
    assert process.returncode == 0, err
    assert "event loop closed" in out
    assert took < shutdown_timeout + 1.0
    assert "QThread: Destroyed" not in err
    assert "Fatal Python error" not in err
    assert "Traceback" not in err, err
    assert len(tree) >= 5  # the tree really was there: child, grandchild, 2 workers, ...
    assert survivors == []


class ManagerMachine(RuleBasedStateMachine):
    """Arbitrary interleavings of submit, map, cancel, supersede, owner death and shutdown."""

    def __init__(self) -> None:
        super().__init__()
        QApplication.instance() or QApplication([])
        self.manager = WorkerManager(pools={"io": 2, "background": 1})
        self.gate = threading.Event()
        self.handles: list[TaskHandle[Any]] = []
        self.outcomes: Counter[int] = Counter()
        self.owners = [QObject() for _ in range(3)]
        self.jobs: list[LongJob[str]] = []
        self.job_outcomes: Counter[int] = Counter()
        self.closed = False

    def _track(self, handle: TaskHandle[Any]) -> None:
        task_id = handle.id
        self.handles.append(handle)
        handle.then(
            lambda v: self.outcomes.update([task_id]),
            lambda e: self.outcomes.update([task_id]),
            lambda: self.outcomes.update([task_id]),
            context=self.manager,  # delivered even when the owner dies: counts every outcome
        )

    @rule(
        kind=st.sampled_from(["ok", "error", "blocked"]),
        pool=st.sampled_from(["io", "background"]),
        key=st.sampled_from([None, None, "a", "b"]),
        owner=st.sampled_from([None, 0, 1, 2]),
    )
    def submit(self, kind: str, pool: str, key: str | None, owner: int | None) -> None:
        if self.closed:
            with pytest.raises(ManagerShutdownError):
                self.manager.submit(int)
            return
        target = self.owners[owner] if owner is not None else None
        if target is not None and not shiboken6.isValid(target):
            target = None
        opts = self.manager.options(pool=pool, key=key, owner=target)
        if kind == "blocked":
            self._track(opts.submit(self.gate.wait, 10))
        else:
            self._track(opts.submit(int, "1" if kind == "ok" else "x"))

    @rule(n=st.integers(0, 50))
    def map(self, n: int) -> None:
        if not self.closed:
            self._track(self.manager.map(abs, range(n)))

    @precondition(lambda self: bool(self.handles))
    @rule(index=st.integers(0, 10_000))
    def cancel(self, index: int) -> None:
        self.handles[index % len(self.handles)].cancel()

    @rule(blocked=st.booleans(), key=st.sampled_from([None, "job"]))
    def start_job(self, blocked: bool, key: str | None) -> None:
        if self.closed:
            return
        gate = self.gate

        def work(ctx: JobContext) -> str:
            while blocked and not gate.is_set():
                if ctx.wait(0.01):
                    ctx.raise_if_cancelled()
            return "job done"

        job: LongJob[str] = LongJob(work, manager=self.manager, key=key)
        job_id = job.id
        self.jobs.append(job)
        for outcome in (job.result, job.error, job.cancelled):
            outcome.connect(lambda *_: self.job_outcomes.update([job_id]))
        job.start()

    @precondition(lambda self: bool(self.jobs))
    @rule(index=st.integers(0, 10_000))
    def cancel_job(self, index: int) -> None:
        self.jobs[index % len(self.jobs)].cancel()

    @rule()
    def release(self) -> None:
        self.gate.set()
        self.gate = threading.Event()

    @rule(index=st.integers(0, 2))
    def destroy_owner(self, index: int) -> None:
        owner = self.owners[index]
        if shiboken6.isValid(owner):
            owner.deleteLater()
            QCoreApplication.sendPostedEvents(owner, QEvent.Type.DeferredDelete)

    @rule()
    def deliver(self) -> None:
        self.manager.engine.flush()

    @rule()
    def shutdown(self) -> None:
        self.gate.set()
        self.manager.shutdown(5)
        self.closed = True

    @invariant()
    def counts_add_up(self) -> None:
        for pool in self.manager.statistics().pools.values():
            assert pool.submitted == (
                pool.queued + pool.running + pool.succeeded + pool.failed + pool.cancelled
            )
        assert all(n == 1 for n in self.outcomes.values())
        assert all(n == 1 for n in self.job_outcomes.values())
        jobs = self.manager.statistics().jobs
        ended = jobs.succeeded + jobs.failed + jobs.cancelled  # counted when decided
        assert ended <= jobs.started
        assert jobs.started - ended <= jobs.live  # live: not yet delivered and released
        for handle in self.handles:
            if handle.delivered():
                assert self.outcomes[handle.id] == 1, handle

    def teardown(self) -> None:
        self.gate.set()
        self.manager.shutdown(5)
        for handle in self.handles:
            assert handle.done(), handle
            assert self.outcomes[handle.id] == 1, handle
        for job in self.jobs:
            assert job.done(), job
            assert job.wait(5000)
            assert self.job_outcomes[job.id] == 1, job
        jobs = self.manager.statistics().jobs
        assert jobs.started == jobs.succeeded + jobs.failed + jobs.cancelled == len(self.jobs)
        for owner in self.owners:
            if shiboken6.isValid(owner):
                owner.deleteLater()


TestManagerStateMachine = ManagerMachine.TestCase
TestManagerStateMachine.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
