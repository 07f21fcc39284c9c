"""``python -m demo_app``: watch casare_workers' pools work.

Options:
    --screenshot PATH   write a PNG of the window (after --run-for, or at once)
    --run-for SECONDS   run the scripted scenario for that long, then close

With no display (Linux without DISPLAY/WAYLAND_DISPLAY and no QT_QPA_PLATFORM) the demo
says so and runs the scripted scenario offscreen instead of crashing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMessageLogContext, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication, QPushButton

from casare_workers import PoolConfig, WorkerManager, attach_loop, collect_garbage_on_gui_thread
from demo_app.window import DemoWindow

__all__ = ("SCENARIO", "main", "run_scenario")

#: The scripted scenario: (seconds after start, launcher key).
SCENARIO: tuple[tuple[float, str], ...] = (
    (0.3, "cpu"),  # first: its thread phase stalls the GUI (the GIL), on purpose
    (1.0, "io"),
    (1.3, "map"),
    (2.2, "crash"),
    (2.6, "async"),
    (3.6, "job"),
    (3.9, "io"),
)
#: Seconds the scripted scenario runs by default: the screenshot catches the last
#: launches at work.
RUN_FOR = 4.6

# The offscreen platform warns about features it does not have; they do not matter here.
_IGNORED_QT_MESSAGES = ("does not support propagateSizeHints",)


def _qt_messages(kind: QtMsgType, context: QMessageLogContext, message: str) -> None:
    if any(text in message for text in _IGNORED_QT_MESSAGES):
        return
    print(message, file=sys.stderr)


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    on_linux = sys.platform.startswith("linux")
    return not on_linux or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_scenario(
    window: DemoWindow,
    scenario: tuple[tuple[float, str], ...] = SCENARIO,
    until: float | None = None,
) -> None:
    """Click the launchers of ``scenario`` at their times.  GUI thread.

    Steps at or after ``until`` seconds are left out, and a step never clicks a closed
    window: its manager is shut down by then and would (rightly) refuse the work.
    """
    for at, key in scenario:
        button = window.launchers.get(key)
        if button is None or (until is not None and at >= until):
            continue

        def click(button: QPushButton = button) -> None:
            if window.isVisible():
                button.click()

        QTimer.singleShot(int(at * 1000), window, click)


def make_manager(dask: str | None = None) -> tuple[WorkerManager, Callable[[], None]]:
    """The demo's manager and a function that releases what it started.

    The default pools, a thread twin of ``cpu`` (same size) for the threads-vs-processes
    comparison, and a Dask pool when ``dask`` names a scheduler (``"local"`` starts a
    ``LocalCluster`` of two worker processes on loopback).
    """
    # The demo uses every core for the cpu pool (the library's default leaves one to the
    # GUI) so that the threads-vs-processes comparison shows the speed-up even on a
    # 2-core machine; cpu_threads is its same-size thread twin.
    cpu = os.cpu_count() or 1
    pools: dict[str, int | PoolConfig] = {
        "cpu": PoolConfig(cpu, kind="process", idle_timeout=300),
        "cpu_threads": PoolConfig(cpu),
    }
    close: Callable[[], None] = lambda: None  # noqa: E731 - a no-op default
    if dask == "local":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
        pools["dask"] = PoolConfig(2, kind="dask", client=client)

        def close() -> None:
            client.close()  # type: ignore[no-untyped-call]
            cluster.close()

    elif dask is not None:
        pools["dask"] = PoolConfig(cpu, kind="dask", address=dask)
    return WorkerManager(pools=pools), close


def warm_up(manager: WorkerManager) -> None:
    """Start the cpu pool's worker processes now.

    So the first CPU batch measures work, not process start-up (each worker imports
    Python, Qt and the library once).
    """
    opts = manager.options(pool="cpu", name="warm-up")
    for _ in range(manager.statistics()["cpu"].max_workers):
        opts.submit(time.sleep, 0.3)  # overlapping, so every worker process is started


def _run_event_loop(app: QApplication, manager: WorkerManager) -> int:
    """Run the Qt event loop as a qasync asyncio loop (the async launcher needs one).

    The manager's io pool becomes the loop's default executor (``attach_loop``), so
    ``asyncio.to_thread`` shares the bounded pools and stops with them.
    """
    import asyncio

    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    attach_loop(loop, manager)
    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)
    with loop:
        loop.run_until_complete(quit_event.wait())
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's command line: ``[--screenshot PATH] [--run-for SECONDS] [--dask ADDRESS]``."""
    parser = argparse.ArgumentParser(prog="python -m demo_app", description="casare_workers demo")
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the window here")
    parser.add_argument("--run-for", type=float, help="run the scripted scenario, then quit")
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="add a Dask pool on this scheduler ('local' starts a LocalCluster)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; see the module docstring."""
    args = parse_args(argv)
    if not _has_display():
        print("demo_app: no display found; running the scripted scenario offscreen.")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        if args.run_for is None:
            args.run_for = RUN_FOR
        if args.screenshot is None:
            args.screenshot = Path(tempfile.gettempdir()) / "casare_workers_demo.png"
    qInstallMessageHandler(_qt_messages)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    collect_garbage_on_gui_thread()
    manager, release = make_manager(args.dask)
    warm_up(manager)
    window = DemoWindow(manager)
    window.resize(1280, 860)
    window.show()
    finish: Callable[[], None] | None = None
    if args.run_for is not None:
        run_scenario(window, until=args.run_for)

        def finish() -> None:
            if args.screenshot is not None:
                window.grab().save(str(args.screenshot))
                print(f"demo_app: screenshot written to {args.screenshot}")
            for line in window.log_lines:
                print(f"demo_app: {line}")
            window.close()
            app.quit()

        QTimer.singleShot(int(args.run_for * 1000), finish)
    elif args.screenshot is not None:
        QTimer.singleShot(500, lambda: window.grab().save(str(args.screenshot)))
    code = _run_event_loop(app, manager)
    report = manager.shutdown()
    release()
    if not report.clean:
        print(f"demo_app: still running at exit: {', '.join(report.still_running)}")
    return code
