"""What every benchmark script shares: the GUI stall meter, one cell per process, medians.

Each script runs every (contender, scenario) cell in a fresh interpreter, so one
contender's threads, caches and garbage never slow another's; a cell prints its figures
as one JSON line, last on stdout.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer


class GapMeter:
    """A precise timer on the GUI thread; records the worst interval between two ticks.

    The worst gap is the GUI's worst stall while the meter runs: no tick can be late
    unless the event loop was busy (or starved of the GIL).
    """

    def __init__(self, interval_ms: int = 1) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.worst = 0.0

    def start(self) -> None:
        self.last = time.perf_counter()
        self.worst = 0.0
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def stop(self) -> float:
        """Stop and return the worst gap in seconds."""
        self.timer.stop()
        self._tick()
        return self.worst


def run_cell(script: str, cell_args: list[str], timeout: float) -> dict[str, Any] | None:
    """Run ``script`` with ``cell_args`` in a fresh interpreter; its last stdout line (JSON).

    Returns None (and prints the child's stderr) if the cell failed.
    """
    out = subprocess.run(
        [sys.executable, script, *cell_args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        print(f"{' '.join(cell_args)}: FAILED\n{out.stderr}", file=sys.stderr)
        return None
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over several runs of one cell."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def machine(*packages: str) -> dict[str, Any]:
    """The machine line written next to the figures (plus the versions of ``packages``)."""
    import PySide6

    line: dict[str, Any] = {
        "python": platform.python_version(),
        "pyside6": PySide6.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    for package in packages:
        line[package] = importlib.metadata.version(package)
    return line
