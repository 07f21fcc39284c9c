"""Sync code calling a coroutine: the app's nested-loop bridge vs casare_workers.

Answers the seed note's open question 2 ("is the nested event loop in
``DesktopContext._run_async()`` causing issues?") with measurements.

Run::

    python benchmarks/bench_sync_async.py [--calls 2000]

Contenders, each calling a trivial coroutine ``--calls`` times from synchronous code:

* ``nested``: the app's ``_run_async`` as it is today, *from the GUI thread inside the
  running qasync loop* (the case it was written for): a one-shot ``ThreadPoolExecutor``
  running ``asyncio.run(coro)`` per call, the GUI blocked on it.  A 1 ms timer measures the
  freeze it causes.
* ``nested_worker``: the same pattern called from a worker thread.
* ``loopthread``: a persistent ``LoopThread`` (one thread, one loop, created once),
  ``call(coro)`` from a worker thread.
* ``run_coroutine_sync``: ``casare_workers.run_coroutine_sync`` from a worker thread, on the
  GUI's qasync loop.

Reported: median µs per call, and the worst gap of the GUI's 1 ms timer during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CONTENDERS = ("nested", "nested_worker", "loopthread", "run_coroutine_sync")


async def trivial(x: int) -> int:
    await asyncio.sleep(0)
    return x


def nested_run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """The application's ``DesktopContext._run_async`` (from the seed note), verbatim logic."""
    try:
        asyncio.get_running_loop()
        with ThreadPoolExecutor() as pool:
            return pool.submit(asyncio.run, coro).result()
    except RuntimeError:
        return asyncio.run(coro)


def measure(calls: int, call: Callable[[int], Any]) -> list[float]:
    samples = []
    for i in range(calls):
        began = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - began)
    return samples


def run_one(name: str, calls: int) -> dict[str, float]:
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from casare_workers import LoopThread, WorkerManager, attach_loop, run_coroutine_sync

    app = QApplication.instance() or QApplication([])
    manager = WorkerManager()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    attach_loop(loop, manager)
    worst = [0.0]
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        worst[0] = max(worst[0], now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(tick)
    samples: list[float] = []

    async def main() -> None:
        timer.start()
        await asyncio.sleep(0.05)
        last[0] = time.perf_counter()
        worst[0] = 0.0
        if name == "nested":  # on the GUI thread, inside the running loop
            samples.extend(measure(calls, lambda i: nested_run_async(trivial(i))))
        else:
            if name == "nested_worker":

                def body() -> list[float]:
                    return measure(calls, lambda i: nested_run_async(trivial(i)))

            elif name == "loopthread":
                worker_loop = LoopThread(name="bench")

                def body() -> list[float]:
                    try:
                        return measure(calls, lambda i: worker_loop.call(trivial(i)))
                    finally:
                        worker_loop.close()

            else:

                def body() -> list[float]:
                    return measure(calls, lambda i: run_coroutine_sync(trivial(i), timeout=10))

            samples.extend(await asyncio.to_thread(body))
        await asyncio.sleep(0.05)
        timer.stop()

    with loop:
        loop.run_until_complete(main())
    manager.shutdown()
    return {
        "median_us": statistics.median(samples) * 1e6,
        "worst_gap_ms": worst[0] * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(run_one(args.contender, args.calls)))
        return 0
    print("| contender | median µs per call | GUI worst timer gap ms |")
    print("|---|---|---|")
    for name in CONTENDERS:
        out = subprocess.run(
            [sys.executable, __file__, "--contender", name, "--calls", str(args.calls)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1:]} | |")
            continue
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {figures['median_us']:.0f} | {figures['worst_gap_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
