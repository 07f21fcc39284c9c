"""The demo window (placeholder until the demo issue): live pool statistics and a burst."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from casare_workers import ManagerStatistics, WorkerManager


def _io_task(i: int) -> int:
    time.sleep(0.01)  # stands in for a network or disk wait
    return i


class DemoWindow(QMainWindow):
    """Shows each pool's counters and launches a burst of I/O tasks."""

    def __init__(self, manager: WorkerManager) -> None:
        super().__init__()
        self.manager = manager
        self.setWindowTitle("casare_workers demo")
        central = QWidget(self)
        layout = QVBoxLayout(central)
        self.stats_label = QLabel("idle", central)
        self.burst_button = QPushButton("Run 200 I/O tasks", central)
        self.burst_button.clicked.connect(self.run_burst)
        layout.addWidget(self.burst_button)
        layout.addWidget(self.stats_label)
        self.setCentralWidget(central)
        manager.statistics_changed.connect(self.show_statistics)
        self.show_statistics(manager.statistics())

    def run_burst(self) -> None:
        """Submit 200 short I/O-bound tasks owned by this window.  GUI thread."""
        opts = self.manager.options(owner=self)
        for i in range(200):
            opts.submit(_io_task, i)

    def show_statistics(self, stats: ManagerStatistics) -> None:
        """Render the counters.  Runs on the GUI thread."""
        lines = [
            f"{s.name:<11} max {s.max_workers:>2}  busy {s.busy:>2}  queued {s.queued:>4}  "
            f"done {s.succeeded:>5}  failed {s.failed:>3}  cancelled {s.cancelled:>3}  "
            f"{s.throughput:>7.1f}/s"
            for s in stats.pools.values()
        ]
        self.stats_label.setText("\n".join(lines))


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    on_linux = sys.platform.startswith("linux")
    return not on_linux or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str]) -> int:
    """Run the demo; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m demo_app", description=__doc__)
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the window here")
    parser.add_argument("--run-for", type=float, help="run a scripted scenario, then quit")
    args = parser.parse_args(argv)
    if not _has_display():
        print("demo_app: no display found; running the headless scenario offscreen.")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        if args.run_for is None:
            args.run_for = 3.0
        if args.screenshot is None:
            args.screenshot = Path(tempfile.gettempdir()) / "casare_workers_demo.png"
    app = QApplication.instance() or QApplication(sys.argv[:1])
    manager = WorkerManager()
    window = DemoWindow(manager)
    window.resize(720, 240)
    window.show()
    if args.run_for is not None:
        QTimer.singleShot(0, window.run_burst)

        def finish() -> None:
            if args.screenshot is not None:
                window.grab().save(str(args.screenshot))
                print(f"demo_app: screenshot written to {args.screenshot}")
            window.close()
            app.quit()

        QTimer.singleShot(int(args.run_for * 1000), finish)
    code = app.exec()
    manager.shutdown()
    return code
