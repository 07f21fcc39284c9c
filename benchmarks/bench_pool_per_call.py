"""A new thread pool per request (the app's pattern) vs one shared, bounded pool.

For the seed note's open question 1 (a global executor registry).  Run::

    python benchmarks/bench_pool_per_call.py [--calls 2000]

Measures the median round trip of a trivial call from a non-GUI thread: through a
``ThreadPoolExecutor`` created and shut down per call, through one shared
``ThreadPoolExecutor``, and through a shared casare_workers pool (``handle.result()``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def trivial() -> int:
    return 1


def median_us(calls: int, call: Callable[[], object]) -> float:
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1e6


def per_call_pool() -> int:
    with ThreadPoolExecutor() as pool:
        return pool.submit(trivial).result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    from PySide6.QtCore import QCoreApplication

    from casare_workers import WorkerManager

    app = QCoreApplication.instance() or QCoreApplication([])
    manager = WorkerManager()
    shared = ThreadPoolExecutor(max_workers=8)
    rows = {
        "new ThreadPoolExecutor per call": median_us(args.calls, per_call_pool),
        "one shared ThreadPoolExecutor": median_us(
            args.calls, lambda: shared.submit(trivial).result()
        ),
        "one shared casare_workers pool": median_us(
            args.calls, lambda: manager.submit(trivial).result(timeout=10)
        ),
    }
    shared.shutdown()
    manager.shutdown()
    del app
    print("| pattern | median µs per call |")
    print("|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
