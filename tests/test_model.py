from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QTableView

from casare_workers import (
    ProgressBarDelegate,
    TaskContext,
    TaskState,
    TaskTableModel,
    WorkerManager,
)
from tests.conftest import Gate


def _column(model: TaskTableModel, column: int) -> list[Any]:
    return [model.index(r, column).data() for r in range(model.rowCount())]


def test_rows_appear_and_update_in_batches(qapp: Any, gate: Gate) -> None:
    with WorkerManager(pools={"io": 1}) as manager:
        model = TaskTableModel(manager, refresh_ms=10_000)  # refreshed by hand below
        inserted: list[tuple[int, int]] = []
        changed: list[tuple[int, int]] = []
        model.rowsInserted.connect(lambda parent, first, last: inserted.append((first, last)))
        model.dataChanged.connect(lambda a, b, roles: changed.append((a.row(), b.row())))
        manager.submit(gate.wait)  # holds the only thread: the rest stays queued
        for i in range(500):
            manager.submit(pow, i, 2)
        model.refresh()
        assert inserted == [(0, 500)]  # one signal for 501 new rows
        assert set(_column(model, model.STATE_COLUMN)[1:]) == {"queued"}
        gate.open()
        assert manager.wait_for_done(5)
        model.refresh()
        assert changed == [(0, 500)]  # one signal for every changed row
        assert set(_column(model, model.STATE_COLUMN)) == {"succeeded"}
        assert _column(model, model.OUTCOME_COLUMN)[1:4] == ["0", "1", "4"]
        model.detach()


def test_progress_role_and_text(manager: WorkerManager, make_gate: Any) -> None:
    reported, release = make_gate(), make_gate()

    def job(ctx: TaskContext) -> None:
        ctx.progress(3, 4)
        reported.open()
        release.wait()

    model = TaskTableModel(manager, refresh_ms=10_000)
    handle = manager.submit(job)
    reported.wait()
    model.refresh()
    index = model.index(0, model.PROGRESS_COLUMN)
    assert index.data(model.ProgressRole) == (3, 4)
    assert index.data() == "3/4"
    assert model.index(0, model.STATE_COLUMN).data() == "running"
    assert model.index(0, 0).data(model.TaskRole) is handle
    release.open()
    assert manager.wait_for_done(5)
    model.detach()


def test_failed_row_shows_traceback_on_demand(manager: WorkerManager) -> None:
    def broken() -> None:
        raise ValueError("bad input")

    model = TaskTableModel(manager, refresh_ms=10_000)
    manager.submit(broken)
    assert manager.wait_for_done(5)
    model.refresh()
    outcome = model.index(0, model.OUTCOME_COLUMN)
    assert outcome.data() == "ValueError: bad input"
    traceback = outcome.data(Qt.ItemDataRole.ToolTipRole)
    assert "in broken" in traceback
    assert "ValueError: bad input" in traceback
    assert outcome.data(model.TracebackRole) == traceback
    model.detach()


def test_cancel_from_a_row_and_cancel_all(manager: WorkerManager, gate: Gate) -> None:
    model = TaskTableModel(manager, refresh_ms=10_000)
    handles = [manager.submit(gate.wait) for _ in range(5)]
    model.refresh()
    assert model.cancel_row(2) is True
    assert handles[2].state is TaskState.CANCELLED
    assert model.cancel_all() == 4
    gate.open()
    assert manager.wait_for_done(5)
    model.refresh()
    assert set(_column(model, model.STATE_COLUMN)) == {"cancelled"}
    model.detach()


def test_finished_rows_beyond_max_rows_are_dropped(manager: WorkerManager) -> None:
    model = TaskTableModel(manager, max_rows=100, refresh_ms=10_000)
    for i in range(300):
        manager.submit(abs, i)
    assert manager.wait_for_done(5)
    model.refresh()
    assert model.rowCount() == 100
    assert model.index(0, model.OUTCOME_COLUMN).data() == "200"  # the newest are kept
    model.clear_finished()
    assert model.rowCount() == 0
    model.detach()


def test_the_timer_refreshes_by_itself(manager: WorkerManager, qtbot: Any) -> None:
    model = TaskTableModel(manager, refresh_ms=20)
    manager.submit(abs, -3)
    qtbot.waitUntil(lambda: _column(model, model.OUTCOME_COLUMN) == ["3"], timeout=5000)
    assert model.rowCount(QModelIndex()) == 1
    assert model.headerData(0, Qt.Orientation.Horizontal) == "Task"
    model.detach()


def test_delegate_paints_bars_in_a_view(manager: WorkerManager, qtbot: Any) -> None:
    model = TaskTableModel(manager, refresh_ms=10_000)

    def known(ctx: TaskContext) -> None:
        ctx.progress(1, 2)

    def unknown(ctx: TaskContext) -> None:
        ctx.progress(7, 0)

    manager.submit(known)
    manager.submit(unknown)
    manager.submit(abs, 1)  # no progress: painted as a plain cell
    assert manager.wait_for_done(5)
    model.refresh()
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    delegate = ProgressBarDelegate(view)
    view.setItemDelegateForColumn(model.PROGRESS_COLUMN, delegate)
    view.setColumnWidth(model.PROGRESS_COLUMN, 200)
    view.resize(700, 200)
    view.show()
    image = view.viewport().grab().toImage()

    def bluish(row: int, fraction: float) -> bool:
        rect = view.visualRect(model.index(row, model.PROGRESS_COLUMN))
        color = image.pixelColor(rect.left() + int(rect.width() * fraction), rect.center().y())
        return color.blue() - color.red() > 40

    assert bluish(0, 0.2)  # the filled half of the 1/2 bar
    assert not bluish(0, 0.85)  # its empty half
    assert bluish(1, 0.85)  # unknown total: a full busy bar
    assert not bluish(2, 0.2)  # no progress: a plain cell
    model.detach()


def test_long_jobs_started_with_the_manager_get_rows(manager: WorkerManager, gate: Gate) -> None:
    from casare_workers import JobContext, LongJob

    class Index(LongJob[int]):
        def work(self, ctx: JobContext) -> int:
            ctx.progress(5, 10)
            gate.wait()
            return 10

    model = TaskTableModel(manager, refresh_ms=10_000)
    job = Index(manager=manager)
    job.start()
    manager.submit(abs, -1)
    model.refresh()
    assert model.rowCount() == 2
    assert model.task_at(0) is job
    assert model.index(0, model.POOL_COLUMN).data() == "jobs"
    assert model.index(0, model.NAME_COLUMN).data().endswith("Index")
    gate.open()
    assert manager.wait_for_done(5)
    model.refresh()
    assert model.index(0, model.STATE_COLUMN).data() == "succeeded"
    assert model.index(0, model.OUTCOME_COLUMN).data() == "10"
    model.detach()
