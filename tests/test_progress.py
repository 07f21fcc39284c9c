from __future__ import annotations

from typing import Any

import pytest
import shiboken6
from PySide6.QtWidgets import QProgressBar

from casare_workers import JobContext, LongJob, TaskContext, WorkerManager, to_percent
from casare_workers.pytest_plugin import wait_for_handle
from tests.conftest import Gate


def test_to_percent_moves_a_progress_bar_from_a_task(manager: WorkerManager, qtbot: Any) -> None:
    # handle.signals.progress.connect(bar.setValue) never moved the bar: progress is
    # (done, total), and setValue takes one number.
    bar = QProgressBar()
    qtbot.addWidget(bar)
    seen: list[int] = []
    bar.valueChanged.connect(seen.append)

    def import_files(paths: list[str], ctx: TaskContext) -> int:
        for i, _path in enumerate(paths):
            ctx.progress(i + 1, len(paths))
        return len(paths)

    handle = manager.submit(import_files, ["a", "b", "c", "d"])
    handle.signals.progress.connect(to_percent(bar.setValue))
    assert wait_for_handle(handle) == 4
    assert bar.value() == 100  # the final value always arrives
    assert seen
    assert all(0 <= value <= 100 for value in seen)


def test_to_percent_on_a_long_job(manager: WorkerManager, qtbot: Any, gate: Gate) -> None:
    bar = QProgressBar()
    qtbot.addWidget(bar)

    def work(ctx: JobContext) -> None:
        ctx.progress(3, 4)
        gate.wait()

    job: LongJob[None] = LongJob(work, manager=manager)
    job.progress.connect(to_percent(bar.setValue))
    job.start()
    qtbot.waitUntil(lambda: bar.value() == 75, timeout=5000)
    gate.open()
    qtbot.waitUntil(manager.is_idle, timeout=5000)


def test_to_percent_skips_unknown_totals_and_dead_widgets(qapp: Any) -> None:
    calls: list[int] = []
    show = to_percent(calls.append)
    show(5, 0)  # unknown total
    show(5, -1)
    show(1, 3)
    show(7, 5)  # clamped
    assert calls == [33, 100]
    bar = QProgressBar()
    on_bar = to_percent(bar.setValue)
    shiboken6.delete(bar)
    on_bar(1, 2)  # no "Internal C++ object already deleted"
    with pytest.raises(TypeError, match=r"bar\.setValue"):
        to_percent(42)  # type: ignore[arg-type]
