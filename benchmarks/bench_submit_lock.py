"""Where a GUI-thread ``submit`` spends its time while the workers run: the pool's lock.

Run::

    python benchmarks/bench_submit_lock.py                 # 20 000 tasks, 3 runs
    python benchmarks/bench_submit_lock.py --n 2000 --repeat 5

Each run submits N trivial tasks with ``then(cb)`` from the GUI thread in one loop while
2 worker threads run them, and times every acquisition of the thread pool's lock that a
submit makes (the pool's ``submit`` is wrapped to take and time the lock once before
doing its work, so the figure is the wait, not the work).  It prints, per run, the
GUI thread's µs per submit, the share of the submit loop spent waiting for the lock,
how many waits took over 1 ms, and the longest.

Why it matters: a worker that releases the lock hands it to the waiting GUI thread, but
not the GIL; the GUI thread runs again only when that worker next blocks.  See
``docs/performance.md`` (the hot path).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication

from casare_workers import WorkerManager
from casare_workers._pools._threadpool import ThreadPool


def trivial(i: int) -> int:
    return i


def one_run(app: QApplication, n: int) -> dict[str, float]:
    """Submit ``n`` tasks while the workers run; time the pool-lock waits of the submits."""
    waits: list[float] = []
    original = ThreadPool.submit
    clock = time.perf_counter

    def timed_submit(self: ThreadPool, task: Any, priority: int) -> None:
        began = clock()
        self.lock.acquire()
        waits.append(clock() - began)
        self.lock.release()
        original(self, task, priority)

    manager = WorkerManager(pools={"io": 2})
    done = [0]

    def on_result(_value: object) -> None:
        done[0] += 1
        if done[0] == n:
            app.quit()

    try:
        for i in range(200):  # warm the threads and code paths up
            manager.submit(trivial, i)
        manager.wait_for_done(10)
        gc.collect()
        ThreadPool.submit = timed_submit  # type: ignore[method-assign]
        began = clock()
        for i in range(n):
            manager.submit(trivial, i).then(on_result)
        submitted = clock()
        app.exec()
    finally:
        ThreadPool.submit = original  # type: ignore[method-assign]
        manager.shutdown()
    loop = submitted - began
    return {
        "submit_us": 1e6 * loop / n,
        "lock_wait_share": sum(waits) / loop,
        "waits_over_1ms": float(sum(1 for w in waits if w > 0.001)),
        "longest_wait_ms": 1e3 * max(waits),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000, help="tasks per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs (one process)")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    print("| run | GUI µs per submit | waiting for the pool lock | waits > 1 ms | longest ms |")
    print("|---|---|---|---|---|")
    for run in range(1, args.repeat + 1):
        r = one_run(app, args.n)
        print(
            f"| {run} | {r['submit_us']:.1f} | {100 * r['lock_wait_share']:.0f} % "
            f"| {r['waits_over_1ms']:.0f} | {r['longest_wait_ms']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
