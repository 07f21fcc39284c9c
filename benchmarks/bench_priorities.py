"""Priorities benchmark: one priority level against a distinct priority per task.

Run (each cell in its own fresh process, repeated; medians reported)::

    python benchmarks/bench_priorities.py                  # prints a Markdown table
    python benchmarks/bench_priorities.py --tasks 100000 --repeat 3

A 1-thread ``"io"`` pool is held busy while ``--tasks`` trivial tasks are queued, each
at priority 0 (``one``) or at a priority of its own, lowest last (``distinct``, the
worst order for a sorted list of levels); then the thread is released.  Figures: the
seconds from the release until every task has been delivered, and the memory still
held once they all ran (``tracemalloc``, after a full collection), which is what the
pool keeps per priority level it has seen.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import machine, median_of, run_cell
from PySide6.QtCore import QCoreApplication

SCENARIOS = ("one", "distinct")


def cell(scenario: str, tasks: int) -> dict[str, Any]:
    """Run one cell in this process; return its figures."""
    from casare_workers import WorkerManager

    app = QCoreApplication.instance() or QCoreApplication([])
    manager = WorkerManager(pools={"io": 1})
    release = threading.Event()
    manager.submit(release.wait, 60)  # holds the only thread: everything below queues
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(tasks):
        priority = -i if scenario == "distinct" else 0
        manager.options(priority=priority).submit(int, "1")
    began = time.perf_counter()
    release.set()
    assert manager.wait_for_done(600)
    seconds = time.perf_counter() - began
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    manager.shutdown(5)
    del app
    return {"seconds": round(seconds, 3), "held_mib": round(held / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cell", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print(json.dumps(cell(args.cell, args.tasks)))
        return
    print(f"machine: {json.dumps(machine())}")
    print(f"\n{args.tasks} tasks, medians of {args.repeat} runs\n")
    print("| priorities | seconds to run them all | MiB held after |")
    print("|---|---|---|")
    for scenario in SCENARIOS:
        runs = [
            run
            for _ in range(args.repeat)
            if (run := run_cell(__file__, ["--cell", scenario, "--tasks", str(args.tasks)], 900))
        ]
        if not runs:
            print(f"| {scenario} | failed | failed |")
            continue
        figures = median_of(runs)
        print(f"| {scenario} | {figures['seconds']:.2f} | {figures['held_mib']:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
