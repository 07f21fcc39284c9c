"""Nothing is lost, nothing is delivered twice, nothing leaks, nothing hangs.

The heavier cases carry the ``slow`` marker (CI runs them; deselect locally with
``-m 'not slow'``).  Figures for the closing note: ``pytest -m slow -k load -s`` prints
the tasks run and what was lost or duplicated.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from collections import Counter
from typing import Any

import pytest
import shiboken6
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from PySide6.QtCore import QCoreApplication, QEvent, QObject
from PySide6.QtWidgets import QApplication, QWidget

from casare_workers import (
    JobContext,
    LongJob,
    ManagerShutdownError,
    TaskContext,
    TaskHandle,
    WorkerManager,
)
from casare_workers.pytest_plugin import wait_for_handle


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

    def watch_then(self, handle: TaskHandle[Any]) -> None:
        task_id = handle.id
        handle.then(
            lambda value: self._terminal(task_id),
            lambda error: self._terminal(task_id),
            lambda: self._terminal(task_id),
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
def test_load_100k_tasks_end_exactly_once_and_nothing_leaks(
    qapp: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(20261128)
    ledger = Ledger()
    manager = WorkerManager(pools={"io": 8, "cpu": 2, "background": 4, "extra": 3})
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
def test_submits_from_16_threads_and_the_gui_thread_are_all_delivered(qapp: Any) -> None:
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
    assert sorted(delivered) == list(range(17 * per_thread))
    assert set(delivered.values()) == {1}
    assert len(handles) + len(gui) == 17 * per_thread


@pytest.mark.slow
def test_owners_deleted_with_1000_tasks_in_flight(qapp: Any, make_gate: Any) -> None:
    release = make_gate()
    touched: list[str] = []
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
    assert touched == []  # nothing ran for a deleted widget


def test_exceptions_in_progress_slots_are_reported_and_delivery_goes_on(
    manager: WorkerManager, qtbot: Any
) -> None:
    def job(ctx: TaskContext) -> int:
        ctx.progress(1, 2)
        return 7

    handle = manager.submit(job)

    def bad_progress(current: int, total: int) -> None:
        raise RuntimeError("progress slot bug")

    handle.signals.progress.connect(bad_progress)
    results: list[int] = []
    handle.signals.result.connect(results.append)
    with qtbot.capture_exceptions() as exceptions:
        wait_for_handle(handle)
    assert results == [7]
    assert [str(e[1]) for e in exceptions] == ["progress slot bug"]


def test_warnings_in_worker_threads_reach_the_warnings_machinery(manager: WorkerManager) -> None:
    hook = warnings.showwarning

    def noisy() -> str:
        warnings.warn("from a worker thread", UserWarning, stacklevel=1)
        return "done"

    with pytest.warns(UserWarning, match="from a worker thread"):
        assert wait_for_handle(manager.submit(noisy)) == "done"
    assert warnings.showwarning is hook  # the library installed no hook of its own


def test_a_warning_turned_error_fails_only_its_task(manager: WorkerManager) -> None:
    def noisy() -> None:
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning, match="deprecated thing"):
            wait_for_handle(manager.submit(noisy))
    assert wait_for_handle(manager.submit(int, "3")) == 3


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
        for signal in (job.result, job.error, job.cancelled):
            signal.connect(lambda *_: self.job_outcomes.update([job_id]))
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
            if handle._delivered:
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
