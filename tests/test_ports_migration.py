from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Slot

from casare_workers import TaskError, TaskState, WorkerManager
from demo_app.ports.migration import (
    InMemoryMigration,
    MigrationDialog,
    MigrationJob,
    MigrationResult,
)
from tests.conftest import Gate


def workspaces(n: int = 5) -> dict[str, dict[str, int]]:
    return {"legacy": {f"wf-{i}": 1 for i in range(n)}}


class Watch(QObject):
    """Records a migration job's signals in order (GUI-thread slots)."""

    def __init__(self, job: MigrationJob) -> None:
        super().__init__()
        self.events: list[Any] = []
        job.progress.connect(self.on_progress)
        job.status.connect(self.on_status)
        job.result.connect(self.on_result)
        job.error.connect(self.on_error)
        job.cancelled.connect(self.on_cancelled)

    @Slot("qint64", "qint64")
    def on_progress(self, done: int, total: int) -> None:
        self.events.append(("progress", done, total))

    @Slot(str)
    def on_status(self, text: str) -> None:
        self.events.append(("status", text))

    @Slot(object)
    def on_result(self, result: object) -> None:
        self.events.append(("result", result))

    @Slot(object)
    def on_error(self, error: object) -> None:
        self.events.append(("error", error))

    @Slot()
    def on_cancelled(self) -> None:
        self.events.append(("cancelled",))

    def outcome(self) -> Any:
        return self.events[-1]


def run_to_end(qtbot: Any, manager: WorkerManager, job: MigrationJob) -> None:
    qtbot.waitUntil(lambda: job.isFinished() and job not in manager.live_jobs(), timeout=10_000)


class HoldAt:
    """A ``before_step`` hook that parks the migration inside one step until released."""

    def __init__(self, name: str, release: Gate) -> None:
        self.name = name
        self.release = release
        self.inside = threading.Event()

    async def __call__(self, name: str) -> None:
        if name == self.name:
            self.inside.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)


def test_migration_runs_each_step_with_progress_and_succeeds(
    manager: WorkerManager, qtbot: Any
) -> None:
    use_case = InMemoryMigration(workspaces())
    job = MigrationJob(use_case, "legacy", "v2", manager=manager)
    watch = Watch(job)
    job.start()
    run_to_end(qtbot, manager, job)
    kind, result = watch.outcome()
    assert kind == "result"
    assert result == MigrationResult(True, "legacy", "v2", False, 5, 5)
    assert ("progress", 5, 5) in watch.events  # the final progress always arrives
    assert use_case.workspaces["v2"] == {f"wf-{i}": 2 for i in range(5)}
    assert use_case.rollbacks == 0


def test_migration_business_failure_is_a_result_not_an_error(
    manager: WorkerManager, qtbot: Any
) -> None:
    use_case = InMemoryMigration(workspaces(), failing={"wf-2": "unsupported node 'OCR v1'"})
    job = MigrationJob(use_case, "legacy", "v2", manager=manager)
    watch = Watch(job)
    job.start()
    run_to_end(qtbot, manager, job)
    kind, result = watch.outcome()
    assert kind == "result"
    assert result.success is False
    assert result.errors == ("wf-2: unsupported node 'OCR v1'",)
    assert result.steps_done == 2
    assert result.rolled_back is True  # wf-0 and wf-1 had been written
    assert use_case.workspaces["v2"] == {}
    assert job.state is TaskState.SUCCEEDED  # the job did its job: report the failure


def test_migration_exception_goes_to_error_with_its_traceback(
    manager: WorkerManager, qtbot: Any
) -> None:
    use_case = InMemoryMigration(workspaces(), exploding=frozenset({"wf-1"}))
    job = MigrationJob(use_case, "legacy", "v2", manager=manager)
    watch = Watch(job)
    job.start()
    run_to_end(qtbot, manager, job)
    kind, error = watch.outcome()
    assert kind == "error"
    assert isinstance(error, TaskError)
    assert isinstance(error.exception, ConnectionError)
    assert "_migrate" in error.traceback


def test_migration_cancel_waits_for_the_step_then_rolls_back(
    manager: WorkerManager, qtbot: Any, gate: Gate
) -> None:
    hold = HoldAt("wf-1", gate)
    use_case = InMemoryMigration(workspaces(), before_step=hold)
    job = MigrationJob(use_case, "legacy", "v2", manager=manager)
    watch = Watch(job)
    job.start()
    assert hold.inside.wait(10)
    job.cancel()  # mid-step: not honoured until the step is done
    gate.open()
    run_to_end(qtbot, manager, job)
    assert watch.outcome() == ("cancelled",)
    assert ("status", "rolling back") in watch.events
    assert use_case.rollbacks == 1
    assert use_case.workspaces["v2"] == {}  # wf-0 and wf-1 were written, then undone
    assert ("status", "migrating wf-2") not in watch.events  # no step began after cancel


def test_migration_cancel_before_any_write_needs_no_rollback(
    manager: WorkerManager, qtbot: Any, gate: Gate
) -> None:
    hold = HoldAt("wf-0", gate)
    use_case = InMemoryMigration(workspaces(), before_step=hold, exploding=frozenset())
    job = MigrationJob(use_case, "legacy", "v2", dry_run=True, manager=manager)
    job.start()
    assert hold.inside.wait(10)
    job.cancel()
    gate.open()
    run_to_end(qtbot, manager, job)
    assert job.state is TaskState.CANCELLED
    assert use_case.rollbacks == 0


def test_migration_dry_run_writes_nothing(manager: WorkerManager, qtbot: Any) -> None:
    use_case = InMemoryMigration(workspaces(3))
    job = MigrationJob(use_case, "legacy", "v2", dry_run=True, manager=manager)
    job.start()
    run_to_end(qtbot, manager, job)
    result = job.get(0)
    assert result.success
    assert result.dry_run
    assert use_case.workspaces["v2"] == {}


def test_migration_missing_workspace_is_an_error(manager: WorkerManager, qtbot: Any) -> None:
    job = MigrationJob(InMemoryMigration({}), "nowhere", "v2", manager=manager)
    watch = Watch(job)
    job.start()
    run_to_end(qtbot, manager, job)
    kind, error = watch.outcome()
    assert kind == "error"
    assert isinstance(error.exception, KeyError)


def test_migration_dialog_shows_progress_and_close_cancels_with_rollback(
    manager: WorkerManager, qtbot: Any, gate: Gate
) -> None:
    hold = HoldAt("wf-2", gate)
    use_case = InMemoryMigration(workspaces(), before_step=hold)
    dialog = MigrationDialog(use_case, "legacy", "v2", manager=manager)
    qtbot.addWidget(dialog)
    dialog.show()
    job = dialog.start()
    assert hold.inside.wait(10)
    qtbot.waitUntil(lambda: dialog.bar.value() == 2)
    assert "elapsed" in dialog.time_label.text()
    dialog.close()  # the window's close button: cancel, then close
    gate.open()
    run_to_end(qtbot, manager, job)
    assert job.state is TaskState.CANCELLED
    assert use_case.workspaces["v2"] == {}
    assert dialog.step_label.text() == "Migration cancelled (changes rolled back)"


def test_migration_dialog_second_start_supersedes_the_first(
    manager: WorkerManager, qtbot: Any, gate: Gate
) -> None:
    hold = HoldAt("wf-0", gate)
    use_case = InMemoryMigration(workspaces(2), before_step=hold)
    dialog = MigrationDialog(use_case, "legacy", "v2", manager=manager)
    qtbot.addWidget(dialog)
    first = dialog.start()
    assert hold.inside.wait(10)
    hold.name = "none"  # the second run is not held
    second = dialog.start()  # the app's double click: the first is cancelled, not destroyed
    gate.open()
    run_to_end(qtbot, manager, first)
    run_to_end(qtbot, manager, second)
    assert first.state is TaskState.CANCELLED
    assert first.cancel_reason == "superseded"
    assert second.get(0).success
    assert isinstance(dialog.outcome, MigrationResult)


def test_migration_dialog_deleted_mid_run_cancels_and_delivers_nothing(
    manager: WorkerManager, qtbot: Any, gate: Gate
) -> None:
    hold = HoldAt("wf-1", gate)
    use_case = InMemoryMigration(workspaces(), before_step=hold)
    dialog = MigrationDialog(use_case, "legacy", "v2", manager=manager)
    job = dialog.start()
    watch = Watch(job)
    assert hold.inside.wait(10)
    shiboken6.delete(dialog)
    gate.open()
    run_to_end(qtbot, manager, job)
    assert job.state is TaskState.CANCELLED
    assert use_case.rollbacks == 1
    assert not any(e[0] in ("result", "error", "cancelled") for e in watch.events)


def test_migration_example_runs_headless() -> None:
    child = subprocess.run(
        [sys.executable, "-m", "demo_app.ports.migration", "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert "success=True" in child.stdout
    assert "steps_done=20" in child.stdout
