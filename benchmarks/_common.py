"""What every benchmark script shares: the GUI stall meter, one cell per process, medians.

Each script runs every (contender, scenario) cell in a fresh interpreter, so one
contender's threads, caches and garbage never slow another's; a cell prints its figures
as one JSON line, last on stdout.  :func:`baseline_checkout` lends a script another
revision of ``casare_workers`` for "old against new" figures from the same run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
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


#: The checkout these scripts belong to (its ``casare_workers`` is the one measured).
ROOT = Path(__file__).resolve().parent.parent


def run_cell(
    script: str,
    cell_args: list[str],
    timeout: float,
    *,
    env: dict[str, str] | None = None,
    errors: list[str] | None = None,
) -> dict[str, Any] | None:
    """Run ``script`` with ``cell_args`` in a fresh interpreter; its last stdout line (JSON).

    Args:
        script: The script to run with this interpreter.
        cell_args: Its arguments (which cell to run).
        timeout: Seconds before the child is killed (``subprocess.TimeoutExpired``).
        env: The child's environment (default: this process's).
        errors: If given, the last line of a failed child's stderr is appended to it,
            for a report to quote.

    Returns None (and prints the child's stderr) if the cell failed.
    """
    out = subprocess.run(
        [sys.executable, script, *cell_args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        print(f"{' '.join(cell_args)}: FAILED\n{out.stderr}", file=sys.stderr)
        if errors is not None:
            lines = out.stderr.strip().splitlines() or [f"exit status {out.returncode}"]
            errors.append(lines[-1])
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


def load_average() -> str:
    """The 1/5/15-minute load averages as ``"a/b/c"`` (``"unknown"`` where unavailable)."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # not available on this platform
        return "unknown"


def git_revision(rev: str = "HEAD", *, root: Path = ROOT) -> str:
    """The short commit id of ``rev`` in the checkout at ``root``.

    Raises:
        subprocess.CalledProcessError: ``rev`` is unknown, or ``root`` is not a git
            checkout.
    """
    out = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def package_dirty(*, root: Path = ROOT) -> bool:
    """True if ``casare_workers/`` in the checkout at ``root`` has uncommitted changes."""
    out = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--", "casare_workers"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(out.stdout.strip())


@contextlib.contextmanager
def baseline_checkout(rev: str, *, root: Path = ROOT) -> Iterator[Path]:
    """Check ``rev`` out into a temporary ``git worktree``; yield its directory.

    Put the directory first on a child's ``PYTHONPATH`` and the child imports that
    revision's ``casare_workers``.  The worktree (detached, no branch) is removed on
    exit, even when the body failed.

    Raises:
        subprocess.CalledProcessError: ``rev`` is unknown, or ``root`` is not a git
            checkout.
    """
    parent = Path(tempfile.mkdtemp(prefix="casare-baseline-"))
    path = parent / "checkout"
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--detach", "--quiet", str(path), rev],
        capture_output=True,
        text=True,
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(root), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )
        # If git could not remove it (a file still open), delete it by hand and let
        # prune drop git's record of it: no stale worktree is left behind either way.
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], check=False)


def python_path(first: Path) -> str:
    """A ``PYTHONPATH`` value with ``first`` ahead of this process's own entries."""
    return os.pathsep.join(filter(None, [str(first), os.environ.get("PYTHONPATH")]))
