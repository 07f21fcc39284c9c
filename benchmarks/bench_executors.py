"""Which process executor to build the process pool on: ProcessPoolExecutor or loky?

Run (each contender in its own fresh process; loky is measured only if installed)::

    python benchmarks/bench_executors.py            # three rounds, a Markdown table
    python benchmarks/bench_executors.py --rounds 5

Each contender is one single-process executor (what a process-pool slot uses), in a
parent that has imported PySide6; ``casare`` is a one-worker casare_workers process
pool built on the first, for comparison (its calls wait on the handles from the
main thread, as the executors' do); ``casare-dask`` is a casare_workers Dask pool on a
one-worker local cluster (worker processes; the scheduler runs in this process), for
start-up, round trip and bursts only (a killed Dask worker is re-run, not reported).
Measured:

* start-up: create the executor and get a first trivial result (spawns the process);
* round trip: median of 300 sequential trivial calls;
* burst: 3 000 trivial calls submitted at once, time per call;
* crash: a call that ``os._exit``s; how long until its future fails, and how long a
  new executor takes to return a first result (what rebuilding a crashed slot costs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CONTENDERS = ("ppe-spawn", "ppe-forkserver", "loky", "casare", "casare-dask")


def noop(x: int = 0) -> int:
    return x


def crash() -> None:
    os._exit(3)


def factory(name: str) -> Callable[[], Any]:
    if name == "loky":
        loky: Any = importlib.import_module("loky")
        return lambda: loky.ProcessPoolExecutor(1)
    method = name.split("-", 1)[1]
    context = multiprocessing.get_context(method)
    return lambda: concurrent.futures.ProcessPoolExecutor(1, mp_context=context)


class _PoolAsExecutor:
    """A one-worker casare_workers pool behind the executor calls used here."""

    def __init__(self, kind: str = "process") -> None:
        from PySide6.QtCore import QCoreApplication

        from casare_workers import PoolConfig, WorkerManager

        self._app = QCoreApplication.instance() or QCoreApplication([])
        self._cluster: Any = None
        if kind == "dask":
            distributed: Any = importlib.import_module("distributed")
            self._cluster = distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, dashboard_address=":0"
            )
            config = PoolConfig(1, kind="dask", address=self._cluster.scheduler_address)
        else:
            config = PoolConfig(1, kind="process")
        self._manager = WorkerManager(pools={"p": config})
        self._opts = self._manager.options(pool="p")

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = self._opts.submit(fn, *args).future
        return future

    def shutdown(self) -> None:
        self._manager.shutdown(10)
        if self._cluster is not None:
            self._cluster.close()


def run_one(name: str) -> dict[str, float | str]:
    import PySide6.QtCore  # noqa: F401 - measure with Qt loaded, as in the application

    if name == "casare":
        make: Callable[[], Any] = _PoolAsExecutor
    elif name == "casare-dask":
        make = lambda: _PoolAsExecutor("dask")  # noqa: E731 - one line, like the others
    else:
        make = factory(name)
    began = time.perf_counter()
    executor = make()
    executor.submit(noop, 1).result()
    startup = time.perf_counter() - began
    trips = []
    for _ in range(300):
        began = time.perf_counter()
        executor.submit(noop, 1).result()
        trips.append(time.perf_counter() - began)
    began = time.perf_counter()
    concurrent.futures.wait([executor.submit(noop, i) for i in range(3000)])
    burst = (time.perf_counter() - began) / 3000
    if name == "casare-dask":
        executor.shutdown()
        return {
            "startup_ms": startup * 1e3,
            "roundtrip_us": statistics.median(trips) * 1e6,
            "burst_us": burst * 1e6,
        }
    future = executor.submit(crash)
    began = time.perf_counter()
    try:
        future.result()
        error = "none"
    except Exception as exc:
        error = type(exc).__name__
    detected = time.perf_counter() - began
    began = time.perf_counter()
    if name == "casare":  # the pool replaces its own worker
        executor.submit(noop, 1).result()
        fresh = executor
    else:
        fresh = make()
        fresh.submit(noop, 1).result()
    rebuild = time.perf_counter() - began
    fresh.shutdown()
    try:
        executor.shutdown()
    except Exception:  # it is broken; nothing to shut down cleanly
        pass
    return {
        "startup_ms": startup * 1e3,
        "roundtrip_us": statistics.median(trips) * 1e6,
        "burst_us": burst * 1e6,
        "crash_error": error,
        "crash_detected_ms": detected * 1e3,
        "rebuild_ms": rebuild * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(run_one(args.contender)))
        return 0
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for _ in range(args.rounds):
        for name in CONTENDERS:
            out = subprocess.run(
                [sys.executable, __file__, "--contender", name], capture_output=True, text=True
            )
            if out.returncode == 0:
                rows[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            else:
                print(f"{name}: skipped ({out.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
    print(
        "| executor | start-up ms | round trip µs | burst µs/call | crash detected ms "
        "| rebuild ms |"
    )
    print("|---|---|---|---|---|---|")
    for name, runs in rows.items():
        if not runs:
            continue

        def span(field: str, runs: list[dict[str, Any]] = runs) -> str:
            values = [run[field] for run in runs if field in run]
            return f"{min(values):.0f}-{max(values):.0f}" if values else "-"

        print(
            f"| {name} | {span('startup_ms')} | {span('roundtrip_us')} | {span('burst_us')} "
            f"| {span('crash_detected_ms')} | {span('rebuild_ms')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
