"""asyncio bridge benchmark: casare_workers under qasync against the executor patterns.

Run (each contender and scenario in its own fresh process, repeated, same run)::

    python benchmarks/bench_asyncio.py                 # all, 5 repeats, a Markdown table
    python benchmarks/bench_asyncio.py --repeat 9 --json out.json

Every process runs a real ``qasync.QEventLoop`` on a ``QApplication`` (offscreen).
Thread pools have 8 threads everywhere: the manager's ``io`` pool, and the
``qasync.QThreadExecutor`` installed as the loop's default executor for the executor
contenders (qasync's own default, 10 QThreads, is no faster).

Scenarios and contenders:

roundtrip   1 000 sequential awaits of a trivial function (after 50 warm-up calls);
            the median and 90th percentile of one await.
    await         ``await manager.submit(fn, i)``
    executor      ``await loop.run_in_executor(None, fn, i)``   (qasync's executor)
    to_thread     ``await asyncio.to_thread(fn, i)``            (qasync's executor)
    attached      ``await loop.run_in_executor(None, fn, i)`` after ``attach_loop``
                  (the manager's pool as the default executor)

batch       10 000 awaited calls of a trivial function, all started at once; the total
            time, and the worst gap of a 5 ms ``QTimer`` (the GUI's worst stall).
    map_iter      ``async for index, value in manager.map(fn, items)``
    map_await     ``await manager.map(fn, items)``
    gather_exec   ``await gather(*(loop.run_in_executor(None, fn, i) for i ...))``
    gather_await  ``await gather(*(manager.submit(fn, i) for i ...))`` (for reference:
                  10 000 asyncio tasks at once, as every bridge does without a batch API)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import GapMeter, machine, median_of, run_cell
from PySide6.QtWidgets import QApplication

THREADS = 8
N_ROUNDTRIPS = 1_000
N_WARMUP = 50
N_BATCH = 10_000
GAP_TIMER_MS = 5


def trivial(i: int) -> int:
    return i


Call = Callable[[int], Coroutine[Any, Any, int]]


def make_call(name: str, manager: Any, loop: asyncio.AbstractEventLoop) -> Call:
    """One awaited call of ``trivial`` for the round-trip contenders."""
    if name == "await":

        async def call(i: int) -> int:
            return await manager.submit(trivial, i)  # type: ignore[no-any-return]

    elif name == "to_thread":

        async def call(i: int) -> int:
            return await asyncio.to_thread(trivial, i)

    elif name in ("executor", "attached"):

        async def call(i: int) -> int:
            return await loop.run_in_executor(None, trivial, i)

    else:
        raise ValueError(name)
    return call


async def time_awaits(
    call: Callable[[int], Awaitable[int]], n: int, samples: list[float]
) -> dict[str, float]:
    """``n`` sequential awaits of ``call`` after a warm-up; their median and 90th percentile.

    Appends each duration to ``samples``.  Awaits nothing else, so it runs under asyncio
    and under other coroutine runners (qt-async-threads') alike.
    """
    for i in range(N_WARMUP):
        await call(i)
    clock = time.perf_counter
    for i in range(n):
        began = clock()
        await call(i)
        samples.append(clock() - began)
    samples.sort()
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p90_us": samples[int(len(samples) * 0.9)] * 1e6,
    }


async def scenario_roundtrip(name: str, manager: Any) -> dict[str, float]:
    call = make_call(name, manager, asyncio.get_running_loop())
    return await time_awaits(call, N_ROUNDTRIPS, [])


async def scenario_batch(name: str, manager: Any) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    items = range(N_BATCH)
    # Warm up the threads and code paths (not measured).
    await asyncio.gather(*(loop.run_in_executor(None, trivial, i) for i in range(50)))
    await manager.map(trivial, range(50))
    meter = GapMeter(GAP_TIMER_MS)
    meter.start()
    await asyncio.sleep(0.05)  # the meter's baseline ticks
    began = time.perf_counter()
    if name == "map_iter":
        count = 0
        async for _index, _value in manager.map(trivial, items):
            count += 1
    elif name == "map_await":
        count = len(await manager.map(trivial, items))
    elif name == "gather_exec":
        count = len(await asyncio.gather(*(loop.run_in_executor(None, trivial, i) for i in items)))
    elif name == "gather_await":
        count = len(await asyncio.gather(*(manager.submit(trivial, i) for i in items)))
    else:
        raise ValueError(name)
    total = time.perf_counter() - began
    await asyncio.sleep(0.05)  # anything still queued behind the result shows in the gap
    gap = meter.stop()
    assert count == N_BATCH, count
    return {"total_ms": total * 1e3, "worst_gap_ms": gap * 1e3}


SCENARIOS: dict[str, tuple[str, ...]] = {
    "roundtrip": ("await", "executor", "to_thread", "attached"),
    "batch": ("map_iter", "map_await", "gather_exec", "gather_await"),
}


def run_one(scenario: str, contender: str) -> dict[str, float]:
    from casare_workers import WorkerManager, attach_loop

    qasync: Any = importlib.import_module("qasync")  # untyped: no stubs

    app = QApplication.instance() or QApplication([])
    manager = WorkerManager(pools={"io": THREADS})
    loop = qasync.QEventLoop(app)
    if contender == "attached":
        attach_loop(loop, manager)
    else:
        loop.set_default_executor(qasync.QThreadExecutor(THREADS))

    async def main() -> dict[str, float]:
        if scenario == "roundtrip":
            return await scenario_roundtrip(contender, manager)
        return await scenario_batch(contender, manager)

    with loop:
        result: dict[str, float] = loop.run_until_complete(main())
    manager.shutdown()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--contender")
    parser.add_argument("--repeat", type=int, default=5, help="processes per contender")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    if args.scenario and args.contender:
        print(json.dumps(run_one(args.scenario, args.contender)))
        return 0
    raw: dict[str, list[dict[str, float]]] = {}
    # Interleave the contenders so that background load hits them alike.
    for _ in range(args.repeat):
        for scenario, contenders in SCENARIOS.items():
            if args.scenario and scenario != args.scenario:
                continue
            for contender in contenders:
                cell = run_cell(__file__, ["--scenario", scenario, "--contender", contender], 600)
                if cell is not None:
                    raw.setdefault(f"{scenario}/{contender}", []).append(cell)
    medians = {key: median_of(runs) for key, runs in raw.items()}
    print(render(medians, args.repeat))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine("qasync"), "medians": medians, "raw": raw}, fh, indent=2)
    return 0


def render(medians: dict[str, dict[str, float]], repeat: int) -> str:
    m = machine("qasync")
    lines = [
        f"Python {m['python']}, PySide6 {m['pyside6']}, qasync {m['qasync']}, "
        f"{m['cpus']} CPUs, {m['platform']}; medians of {repeat} processes each",
        "",
        "| round trip | median µs | p90 µs |",
        "|---|---|---|",
    ]
    for contender in SCENARIOS["roundtrip"]:
        row = medians.get(f"roundtrip/{contender}", {})
        lines.append(f"| {contender} | {_fmt(row, 'median_us')} | {_fmt(row, 'p90_us')} |")
    lines += [
        "",
        f"| {N_BATCH} calls | total ms | worst gap of a {GAP_TIMER_MS} ms timer, ms |",
        "|---|---|---|",
    ]
    for contender in SCENARIOS["batch"]:
        row = medians.get(f"batch/{contender}", {})
        lines.append(f"| {contender} | {_fmt(row, 'total_ms')} | {_fmt(row, 'worst_gap_ms')} |")
    return "\n".join(lines)


def _fmt(row: dict[str, float], field: str) -> str:
    value = row.get(field)
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
