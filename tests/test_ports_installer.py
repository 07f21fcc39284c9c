from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, Slot

from casare_workers import TaskState, WorkerManager
from demo_app.ports.installer import (
    CANCELLED,
    COMPLETE,
    TIMED_OUT,
    Installer,
    InstallerDialog,
    failed,
    install,
)
from tests.processes import wait_dead

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process checks")


def stand_in(code: str) -> list[str]:
    """A small Python command standing in for ``playwright install`` (no network)."""
    return [sys.executable, "-c", code]


STEPS = "for pct in (0, 50, 100): print(f'Downloading Chromium {pct}%')"
SLOW = "import os, time\nprint('pid', os.getpid())\ntime.sleep(60)"
# The child starts a grandchild (as an installer's download helper would) and reports both.
TREE = (
    "import os, subprocess, sys, time\n"
    "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('pids', os.getpid(), helper.pid)\n"
    "time.sleep(60)"
)


class Outcome(QObject):
    """Collects an Installer's lines and its (success, message)."""

    def __init__(self, installer: Installer) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.done: list[tuple[bool, str]] = []
        installer.progress_update.connect(self.on_line)
        installer.done.connect(self.on_done)

    @Slot(str)
    def on_line(self, text: str) -> None:
        self.lines.append(text)

    @Slot(bool, str)
    def on_done(self, success: bool, message: str) -> None:
        self.done.append((success, message))


def settle(qtbot: Any, manager: WorkerManager, outcome: Outcome) -> None:
    qtbot.waitUntil(lambda: bool(outcome.done) and manager.is_idle(), timeout=20_000)


def test_installer_streams_lines_and_reports_complete(manager: WorkerManager, qtbot: Any) -> None:
    installer = Installer(stand_in(STEPS), manager=manager)
    outcome = Outcome(installer)
    installer.start()
    settle(qtbot, manager, outcome)
    assert outcome.lines == [f"Downloading Chromium {p}%" for p in (0, 50, 100)]
    assert outcome.done == [(True, COMPLETE)]


def test_installer_nonzero_exit_reports_the_exit_code(manager: WorkerManager, qtbot: Any) -> None:
    installer = Installer(
        stand_in("import sys; print('no space left'); sys.exit(3)"), manager=manager
    )
    outcome = Outcome(installer)
    installer.start()
    settle(qtbot, manager, outcome)
    assert outcome.done == [(False, "Installation failed (exit code: 3)")]
    assert failed(3) == "Installation failed (exit code: 3)"


@posix_only
def test_installer_overall_timeout_reports_timed_out(manager: WorkerManager, qtbot: Any) -> None:
    installer = Installer(stand_in(SLOW), timeout=0.5, terminate_grace=0.2, manager=manager)
    outcome = Outcome(installer)
    installer.start()
    settle(qtbot, manager, outcome)
    assert outcome.done == [(False, TIMED_OUT)]
    assert wait_dead(int(outcome.lines[0].split()[1]))


def test_installer_missing_command_reports_the_error_text(
    manager: WorkerManager, qtbot: Any
) -> None:
    installer = Installer(["/nonexistent/playwright", "install"], manager=manager)
    outcome = Outcome(installer)
    installer.start()
    settle(qtbot, manager, outcome)
    [(success, message)] = outcome.done
    assert success is False
    assert "No such file or directory" in message
    assert "/nonexistent/playwright" in message


@posix_only
def test_installer_cancel_reports_cancelled_and_kills_the_tree(
    manager: WorkerManager, qtbot: Any
) -> None:
    installer = Installer(stand_in(TREE), terminate_grace=0.2, manager=manager)
    outcome = Outcome(installer)
    installer.start()
    qtbot.waitUntil(lambda: bool(outcome.lines), timeout=20_000)
    pids = [int(p) for p in outcome.lines[0].split()[1:]]
    assert installer.is_running()
    assert installer.cancel() is True
    settle(qtbot, manager, outcome)
    assert outcome.done == [(False, CANCELLED)]
    assert all(wait_dead(pid) for pid in pids)


@posix_only
def test_installer_dialog_close_cancels_and_kills_the_child(
    manager: WorkerManager, qtbot: Any
) -> None:
    dialog = InstallerDialog(stand_in(TREE), terminate_grace=0.2, manager=manager)
    qtbot.addWidget(dialog)
    outcome = Outcome(dialog.installer)
    dialog.show()
    dialog.start()
    qtbot.waitUntil(lambda: bool(outcome.lines), timeout=20_000)
    assert dialog.log.toPlainText().startswith("pids")
    pids = [int(p) for p in outcome.lines[0].split()[1:]]
    dialog.close()  # the window's close button, as the user would
    settle(qtbot, manager, outcome)
    assert outcome.done == [(False, CANCELLED)]
    assert all(wait_dead(pid) for pid in pids)
    assert not dialog.isVisible()


@posix_only
def test_installer_dialog_deleted_kills_the_child_silently(
    manager: WorkerManager, qtbot: Any
) -> None:
    dialog = InstallerDialog(stand_in(SLOW), terminate_grace=0.2, manager=manager)
    outcome = Outcome(dialog.installer)
    job = dialog.start()
    qtbot.waitUntil(lambda: bool(outcome.lines), timeout=20_000)
    pid = int(outcome.lines[0].split()[1])
    shiboken6.delete(dialog)  # the dialog (and the installer it owns) are gone
    qtbot.waitUntil(manager.is_idle, timeout=20_000)
    assert wait_dead(pid)
    assert job.state is TaskState.CANCELLED
    assert outcome.done == []  # nothing was delivered to the dead dialog


def test_install_awaitable_variant_reports_like_the_worker() -> None:
    lines: list[str] = []
    assert asyncio.run(install(stand_in(STEPS), on_line=lines.append)) == (True, COMPLETE)
    assert lines == [f"Downloading Chromium {p}%" for p in (0, 50, 100)]
    assert asyncio.run(install(stand_in("import sys; sys.exit(2)"))) == (False, failed(2))
    success, message = asyncio.run(install(["/nonexistent/playwright"]))
    assert success is False
    assert "No such file or directory" in message


@posix_only
def test_install_awaitable_variant_times_out_and_cancels() -> None:
    assert asyncio.run(install(stand_in(SLOW), timeout=0.3, terminate_grace=0.2)) == (
        False,
        TIMED_OUT,
    )
    pids: list[int] = []

    async def cancel_it() -> None:
        started = asyncio.Event()

        def on_line(text: str) -> None:
            pids.append(int(text.split()[1]))
            started.set()

        task = asyncio.ensure_future(install(stand_in(SLOW), on_line=on_line, terminate_grace=0.2))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert wait_dead(pids[0])


def test_installer_example_runs_headless() -> None:
    child = subprocess.run(
        [sys.executable, "-m", "demo_app.ports.installer", "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert "Extracting ... 100%" in child.stdout
    assert child.stdout.rstrip().endswith(f"True {COMPLETE}")
