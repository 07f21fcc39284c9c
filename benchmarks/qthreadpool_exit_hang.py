"""Does the application exit when a pool task is stuck?  QThreadPool vs casare_workers.

Evidence for the design decision (and the seed note's open question 4): run::

    python benchmarks/qthreadpool_exit_hang.py

Each variant runs in a child process: start a task that never returns (a hung OCR call,
a 300 s OAuth wait), then quit the application.  Reported: whether the process exited
within 10 s, and how long it took.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

VARIANTS = {
    "QThreadPool": """
        import threading
        from PySide6.QtCore import QCoreApplication, QThreadPool, QTimer
        app = QCoreApplication([])
        never = threading.Event()
        pool = QThreadPool()
        pool.start(never.wait)
        QTimer.singleShot(100, app.quit)
        app.exec()
    """,
    "casare_workers": """
        import threading
        from PySide6.QtCore import QCoreApplication, QTimer
        from casare_workers import WorkerManager
        app = QCoreApplication([])
        manager = WorkerManager(shutdown_timeout=1.0)
        never = threading.Event()
        manager.submit(never.wait)
        QTimer.singleShot(100, app.quit)
        app.exec()
    """,
}


def main() -> int:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    print("| variant | exited within 10 s | seconds |")
    print("|---|---|---|")
    for name, script in VARIANTS.items():
        began = time.monotonic()
        try:
            subprocess.run(
                [sys.executable, "-c", textwrap.dedent(script)],
                env=env,
                timeout=10,
                capture_output=True,
                check=False,
            )
            exited = "yes"
        except subprocess.TimeoutExpired:
            exited = "no (killed after 10 s)"
        print(f"| {name} | {exited} | {time.monotonic() - began:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
