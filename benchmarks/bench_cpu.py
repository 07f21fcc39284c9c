"""CPU-bound work: do processes help?  (the seed note's open question 3)

Run (each contender and workload in its own fresh process, same machine, same run)::

    python benchmarks/bench_cpu.py                  # all contenders, a Markdown table
    python benchmarks/bench_cpu.py --repeat 7 --json out.json
    python benchmarks/bench_cpu.py --merge run1.json run2.json run3.json   # medians of runs

Workloads (one batch = ``TASKS`` tasks of ~40 ms each on the reference machine):
    python   pure-Python arithmetic: holds the GIL the whole time
    hashlib  SHA-256 of a 32 MiB buffer (made once per worker): releases the GIL

Contenders (``WORKERS`` = the number of CPUs, the same for everyone):
    serial        the batch in one loop, off the GUI thread (the reference)
    threads       casare_workers thread pool
    process       casare_workers process pool, one submit per task
    process_map   casare_workers process pool, one map over the batch (chunked, pipelined)
    bare_ppe      concurrent.futures.ProcessPoolExecutor (spawn), submit + result
    dask          casare_workers Dask pool on a local Dask cluster (worker processes)

Every contender is warmed up first (worker processes started and the task module
imported), then the batch is run ``--repeat`` times; the median wall time is reported.
Results are collected on the GUI thread while a 5 ms ``QTimer`` runs; its worst gap is
the GUI's worst stall during the batches.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import importlib
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import machine, run_cell
from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer

TASKS = 24
SPIN = 400_000
HASH_BYTES = 32 * 2**20
WORKERS = os.cpu_count() or 1
TICK_MS = 5

_buffer: bytes | None = None


def spin(n: int) -> int:
    """Pure-Python arithmetic (holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def digest(_: int) -> str:
    """SHA-256 of a large buffer (hashlib releases the GIL); the buffer is made once."""
    global _buffer
    if _buffer is None:
        _buffer = bytes(HASH_BYTES)
    return hashlib.sha256(_buffer).hexdigest()


WORKLOADS: dict[str, tuple[Callable[[int], object], int]] = {
    "python": (spin, SPIN),
    "hashlib": (digest, 0),
}


class GapTimer:
    """A QTimer that records the gaps between its ticks (the GUI's responsiveness)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last:
            self.gaps.append((now - self._last) * 1000)
        self._last = now

    def start(self) -> None:
        self._last = 0.0
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()


def wait_on_gui(done: Callable[[], bool], timeout: float = 600) -> None:
    """Run the GUI event loop until ``done()`` (checked every tick)."""
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(1)

    def poll() -> None:
        if done():
            loop.quit()

    check.timeout.connect(poll)
    check.start()
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(loop.quit)
    guard.start(int(timeout * 1000))
    loop.exec()
    check.stop()


# -- contenders: each returns a function that runs one batch and returns when done -------


Batch = tuple[Callable[[], None], Callable[[], object]]


def make_serial(fn: Callable[[int], object], arg: int) -> Batch:
    def batch() -> None:
        finished = threading.Event()

        def run() -> None:
            for _ in range(TASKS):
                fn(arg)
            finished.set()

        threading.Thread(target=run, daemon=True).start()
        wait_on_gui(finished.is_set)

    return batch, lambda: None


def make_manager_contender(
    kind: str, fn: Callable[[int], object], arg: int, use_map: bool = False
) -> Batch:
    from casare_workers import PoolConfig, WorkerManager

    cluster: Any = None
    if kind == "dask":
        distributed: Any = importlib.import_module("distributed")
        cluster = distributed.LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )
        config = PoolConfig(WORKERS * 2, kind="dask", address=cluster.scheduler_address)
    else:
        config = PoolConfig(WORKERS, kind=kind)  # type: ignore[arg-type]
    manager = WorkerManager(pools={"bench": config})
    opts = manager.options(pool="bench")

    def batch() -> None:
        if use_map:
            handles: list[Any] = [opts.map(fn, [arg] * TASKS)]
        else:
            handles = [opts.submit(fn, arg) for _ in range(TASKS)]
        wait_on_gui(manager.is_idle)
        for handle in handles:
            handle.result(0)

    def close() -> None:
        manager.shutdown(30)
        if cluster is not None:
            cluster.close()

    batch()  # warm-up: start the workers, import this module there
    return batch, close


def make_bare_ppe(fn: Callable[[int], object], arg: int) -> Batch:
    executor = concurrent.futures.ProcessPoolExecutor(
        WORKERS, mp_context=multiprocessing.get_context("spawn")
    )

    def batch() -> None:
        futures = [executor.submit(fn, arg) for _ in range(TASKS)]
        wait_on_gui(lambda: all(f.done() for f in futures))
        for future in futures:
            future.result()

    batch()  # warm-up
    return batch, executor.shutdown


def run_one(contender: str, workload: str, repeat: int) -> dict[str, Any]:
    app = QCoreApplication.instance() or QCoreApplication([])
    fn, arg = WORKLOADS[workload]
    if contender == "serial":
        batch, close = make_serial(fn, arg)
    elif contender == "bare_ppe":
        batch, close = make_bare_ppe(fn, arg)
    else:
        kind = {"threads": "thread", "process_map": "process"}.get(contender, contender)
        batch, close = make_manager_contender(kind, fn, arg, use_map=contender == "process_map")
    gaps = GapTimer()
    walls = []
    gaps.start()
    for _ in range(repeat):
        began = time.perf_counter()
        batch()
        walls.append(time.perf_counter() - began)
    gaps.stop()
    close()
    del app
    return {
        "wall_s": statistics.median(walls),
        "walls": walls,
        "worst_gap_ms": max(gaps.gaps, default=0.0),
        "median_gap_ms": statistics.median(gaps.gaps) if gaps.gaps else 0.0,
    }


CONTENDERS = ("serial", "threads", "process", "process_map", "bare_ppe", "dask")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--workload", choices=sorted(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--merge", nargs="+", help="print the median table of saved --json runs")
    args = parser.parse_args()
    if args.merge:
        print(render(merge(args.merge), runs=len(args.merge)))
        return 0
    if args.contender and args.workload:
        print(json.dumps(run_one(args.contender, args.workload, args.repeat)))
        return 0
    results: dict[str, dict[str, Any]] = {}
    for workload in WORKLOADS:
        for contender in CONTENDERS:
            key = f"{contender}/{workload}"
            cell_args = ["--contender", contender, "--workload", workload]
            cell = run_cell(__file__, [*cell_args, "--repeat", str(args.repeat)], 3600)
            if cell is None:
                results[key] = {"error": "failed (see stderr)"}
                continue
            results[key] = cell
            print(f"{key}: {cell['wall_s']:.3f} s", file=sys.stderr)
    print(render(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "results": results}, fh, indent=2)
    return 0


def merge(paths: list[str]) -> dict[str, dict[str, Any]]:
    """The median of each figure over several saved runs."""
    runs = []
    for path in paths:
        with open(path) as fh:
            runs.append(json.load(fh)["results"])
    merged: dict[str, dict[str, Any]] = {}
    for key in runs[0]:
        cells = [run[key] for run in runs if "wall_s" in run.get(key, {})]
        if cells:
            merged[key] = {
                field: statistics.median(cell[field] for cell in cells)
                for field in ("wall_s", "worst_gap_ms", "median_gap_ms")
            }
    return merged


def render(results: dict[str, dict[str, Any]], runs: int = 1) -> str:
    m = machine()
    lines = [
        f"Python {m['python']}, PySide6 {m['pyside6']}, {m['cpus']} CPUs, {m['platform']}; "
        f"{TASKS} tasks per batch, {WORKERS} workers"
        + (f"; median of {runs} runs" if runs > 1 else ""),
        "",
        "| workload | contender | batch s (median) | speed-up vs serial | vs threads "
        "| GUI worst gap ms | GUI median gap ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        serial = results.get(f"serial/{workload}", {}).get("wall_s")
        threads = results.get(f"threads/{workload}", {}).get("wall_s")
        for contender in CONTENDERS:
            r = results.get(f"{contender}/{workload}", {})
            wall = r.get("wall_s")
            if wall is None:
                lines.append(f"| {workload} | {contender} | failed | | | | |")
                continue
            vs_serial = f"{serial / wall:.2f}x" if serial else "-"
            vs_threads = f"{threads / wall:.2f}x" if threads else "-"
            lines.append(
                f"| {workload} | {contender} | {wall:.3f} | {vs_serial} | {vs_threads} | "
                f"{r['worst_gap_ms']:.1f} | {r['median_gap_ms']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
