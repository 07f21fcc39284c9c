from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from casare_workers import TaskContext, WorkerManager
from casare_workers.lowlevel import get_engine
from casare_workers.pytest_plugin import wait_for_handle


def test_a_burst_is_delivered_in_batches_not_one_event_per_result(manager: WorkerManager) -> None:
    engine = manager.engine
    results: list[int] = []
    drains_before = engine.drains
    handles = [manager.submit(int, str(i)).then(results.append) for i in range(5_000)]
    assert manager.wait_for_done(10)
    assert sorted(results) == list(range(5_000))
    assert engine.drains - drains_before < len(handles) // 10


def test_the_drain_yields_when_its_budget_is_spent(manager: WorkerManager, qtbot: Any) -> None:
    engine = manager.engine
    delivered: list[int] = []
    budget = engine._budget
    engine._budget = 0.0  # every 32 items the drain gives the event loop a turn
    try:
        gate = threading.Event()
        for _ in range(8):  # occupy every io thread so the 500 results queue up
            manager.submit(gate.wait, 5)
        for i in range(500):
            manager.submit(int, str(i)).then(delivered.append)
        drains_before = engine.drains
        gate.set()
        qtbot.waitUntil(manager.is_idle, timeout=10_000)  # the event loop only, no flush()
    finally:
        engine._budget = budget
    assert sorted(delivered) == list(range(500))
    assert engine.drains - drains_before >= 500 // 32


def test_progress_flood_is_coalesced_per_frame(manager: WorkerManager) -> None:
    engine = manager.engine
    flushes_before = engine.progress_flushes

    def flood(ctx: TaskContext) -> int:
        for i in range(200_000):
            ctx.progress(i + 1, 200_000)
        return 1

    handle = manager.submit(flood)
    progress: list[tuple[int, int]] = []
    order: list[str] = []
    handle.signals.progress.connect(lambda c, t: progress.append((c, t)))
    handle.signals.finished.connect(lambda: order.append("finished"))
    handle.signals.progress.connect(lambda c, t: order.append("progress"))
    wait_for_handle(handle)
    assert progress[-1] == (200_000, 200_000)
    assert order[-1] == "finished"
    assert order[-2] == "progress"
    # One flush per frame at most: far fewer flushes than updates.
    assert engine.progress_flushes - flushes_before < 1_000
    assert len(progress) <= engine.progress_flushes - flushes_before + 1


def test_progress_values_must_be_integers(manager: WorkerManager) -> None:
    def bad(ctx: TaskContext) -> None:
        ctx.progress("half", 2)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match=r"ctx.progress\(current, total\) takes two integers"):
        wait_for_handle(manager.submit(bad))

    def floats(ctx: TaskContext) -> None:
        ctx.progress(1.0, 2.0)  # type: ignore[arg-type]

    handle = manager.submit(floats)
    wait_for_handle(handle)
    assert handle.progress_value == (1, 2)


def test_call_in_gui_thread_passes_exceptions_through(manager: WorkerManager) -> None:
    def fail() -> None:
        raise LookupError("from the GUI thread")

    handle = manager.submit(lambda: manager.call_in_gui_thread(fail).exception(5))
    exc = wait_for_handle(handle)
    assert isinstance(exc, LookupError)


def test_engine_is_shared_by_managers(qapp: Any) -> None:
    with WorkerManager() as a, WorkerManager() as b:
        assert a.engine is b.engine is get_engine()


def test_no_application_is_a_clear_error() -> None:
    code = (
        "import casare_workers as cw\n"
        "try:\n"
        "    cw.WorkerManager()\n"
        "except cw.NoApplicationError as e:\n"
        "    print('OK', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("OK"), out
    assert "create it before the WorkerManager" in out.stdout
