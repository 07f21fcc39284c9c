"""The demo window, driven like a user would: every launcher, the table, closing mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from casare_workers import TaskState, TaskTableModel

pytest.importorskip("pyqtgraph")
qasync = pytest.importorskip("qasync")

from demo_app.app import make_manager, warm_up  # noqa: E402
from demo_app.window import DemoWindow  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(qapp: Any, qtbot: Any, qasync_loop: Any) -> Iterator[DemoWindow]:
    manager, release = make_manager()
    window = DemoWindow(manager)
    qtbot.addWidget(window)
    window.resize(1280, 900)
    window.show()
    yield window
    window.close()
    report = manager.shutdown(10)
    release()
    assert report.clean, report


def _wait_for_report(qtbot: Any, window: DemoWindow, prefix: str, timeout: int = 60_000) -> str:
    qtbot.waitUntil(
        lambda: any(line.startswith(prefix) for line in window.log_lines), timeout=timeout
    )
    return next(line for line in window.log_lines if line.startswith(prefix))


def _states(model: TaskTableModel) -> list[str]:
    model.refresh()
    return [model.index(r, model.STATE_COLUMN).data() for r in range(model.rowCount())]


def test_io_burst_fills_the_table_and_the_counters(demo: DemoWindow, qtbot: Any) -> None:
    demo.launchers["io"].click()
    line = _wait_for_report(qtbot, demo, "I/O burst: 200 requests")
    assert "200 requests" in line
    assert demo.manager.wait_for_done(30)
    states = _states(demo.model)
    assert states.count("succeeded") == 200
    demo.show_statistics(demo.manager.statistics())
    assert demo.panels["io"].values["done"].text() == "200"
    assert demo.summary.text().startswith("200 tasks submitted")


def test_map_of_20000_items_is_one_task(demo: DemoWindow, qtbot: Any) -> None:
    demo.launchers["map"].click()
    line = _wait_for_report(qtbot, demo, "map: 20000 items")
    assert "chunks" in line
    assert demo.manager.wait_for_done(30)
    assert _states(demo.model) == ["succeeded"]


def test_cpu_batch_runs_on_threads_then_processes(demo: DemoWindow, qtbot: Any) -> None:
    warm_up(demo.manager)
    demo.launchers["cpu"].click()
    line = _wait_for_report(qtbot, demo, "CPU batch of")
    assert "threads" in line
    assert "processes" in line
    stats = demo.manager.statistics()
    assert stats["cpu_threads"].succeeded == 1  # one map on threads...
    assert stats["cpu"].succeeded >= 1  # ...then the same map on processes


def test_long_job_pauses_resumes_and_reports(demo: DemoWindow, qtbot: Any) -> None:
    demo.launchers["job"].click()
    job = demo.job
    assert job is not None
    qtbot.waitUntil(lambda: job.state is TaskState.RUNNING, timeout=10_000)
    demo.pause_job.click()
    qtbot.waitUntil(lambda: job.paused, timeout=10_000)
    assert demo.pause_job.text() == "Resume job"
    demo.pause_job.click()
    _wait_for_report(qtbot, demo, "long job: digest")
    qtbot.waitUntil(lambda: not demo.pause_job.isEnabled(), timeout=10_000)


def test_async_sequence_awaits_each_step(demo: DemoWindow, qasync_loop: Any) -> None:
    async def main() -> None:
        await demo.launch_async_sequence()  # what the button starts: an asyncio task

    qasync_loop.run(main())
    line = demo.log_lines[-1]
    assert line.startswith("async sequence:")
    assert "5000 values" in line


def test_crashing_a_process_fails_only_that_task(demo: DemoWindow, qtbot: Any) -> None:
    demo.launchers["crash"].click()
    line = _wait_for_report(qtbot, demo, "crash:")
    assert "WorkerCrashedError" in line
    assert demo.manager.wait_for_done(60)
    stats = demo.manager.statistics()["cpu"]
    assert stats.failed == 1
    assert stats.succeeded == 3
    assert stats.restarts >= 1


def test_migration_and_installer_ports(demo: DemoWindow, qtbot: Any) -> None:
    demo.launchers["migration"].click()
    demo.launchers["installer"].click()
    assert "success=True" in _wait_for_report(qtbot, demo, "migration:")
    assert "Installation complete!" in _wait_for_report(qtbot, demo, "installer:")


def test_cancel_from_the_table_and_cancel_all(demo: DemoWindow, qtbot: Any) -> None:
    demo.launchers["io"].click()
    demo.model.refresh()
    demo.table.selectRow(demo.model.rowCount() - 1)
    demo.cancel_selected.click()
    assert demo.log_lines[-1] == "Cancelled 1 selected task(s)."
    demo.cancel_all.click()
    assert demo.manager.wait_for_done(30)
    states = _states(demo.model)
    assert states[-1] == "cancelled"
    assert states.count("cancelled") + states.count("succeeded") == 200


def test_failed_task_shows_its_traceback(demo: DemoWindow, qtbot: Any) -> None:
    from PySide6.QtWidgets import QPlainTextEdit

    handle = demo.manager.options(pool="io", owner=demo).submit(int, "not a number")
    assert demo.manager.wait_for_done(10)
    assert handle.state is TaskState.FAILED
    demo.model.refresh()
    demo.table.doubleClicked.emit(demo.model.index(0, 0))  # what a double-click does
    assert demo.details.isVisible()
    editor = demo.details.findChild(QPlainTextEdit)
    assert editor is not None
    text = editor.toPlainText()
    assert "Traceback (most recent call last)" in text
    assert "invalid literal for int()" in text
    demo.details.close()


def test_closing_the_window_mid_run_stops_cleanly(qapp: Any, qtbot: Any, qasync_loop: Any) -> None:
    manager, release = make_manager()
    window = DemoWindow(manager)
    window.show()
    for key in ("io", "map", "job", "cpu"):
        window.launchers[key].click()
    window.close()  # owner=window: everything it launched is cancelled
    window.deleteLater()
    report = manager.shutdown(10)
    release()
    assert report.clean, report


def test_busy_window_screenshot(demo: DemoWindow, qtbot: Any, tmp_path: Path) -> None:
    for key in ("io", "map", "job"):
        demo.launchers[key].click()
    qtbot.waitUntil(lambda: demo.manager.statistics().busy, timeout=10_000)
    for _ in range(5):
        demo._redraw_next()
    path = tmp_path / "busy.png"
    assert demo.grab().save(str(path))
    assert path.stat().st_size > 10_000
    demo.cancel_everything()
    assert demo.manager.wait_for_done(30)


@pytest.mark.slow
def test_demo_without_a_display_says_so_and_runs_offscreen(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo_app",
            "--run-for",
            "3",
            "--screenshot",
            str(tmp_path / "d.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "no display found" in out.stdout
    assert (tmp_path / "d.png").stat().st_size > 10_000
    assert "QThread: Destroyed" not in out.stderr
    assert "Traceback" not in out.stderr
