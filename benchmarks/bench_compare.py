"""Side-by-side benchmark: casare_workers against the tools users would pick instead.

One command runs everything and writes ``docs/comparison.md`` and ``docs/comparison.png``::

    python benchmarks/bench_compare.py                    # 3 interleaved repetitions
    python benchmarks/bench_compare.py --repeat 5 --json raw.json
    python benchmarks/bench_compare.py --render raw.json  # re-draw the page, no new runs
    nox -s bench                                          # installs the contenders first

Every cell (scenario x contender x variant) runs in its own fresh process; the
repetitions are interleaved so that a noisy minute on a shared machine hurts every
contender alike, and the page reports the median of the processes.

Every process is what the application this library is for runs: a ``QApplication``
(offscreen) driven by a ``qasync.QEventLoop``, so the GUI thread blocks in Qt's event
loop when idle (no busy ``processEvents`` spinning; superqt, for one, behaves
differently when an event loop is running).  Pools have 8 threads everywhere.

Contenders:
    casare            casare_workers (``submit().then()``, ``handle.signals``, ``map``, ``await``)
    executor          ``concurrent.futures.ThreadPoolExecutor`` + one bridge QObject
                      (``loop.run_in_executor(pool, ...)`` when awaited)
    tutorial          a ``QRunnable`` with its own ``WorkerSignals`` QObject per task
    superqt           ``superqt.utils.create_worker`` (generator workers for progress)
    qasync            ``loop.run_in_executor(None, ...)`` on qasync's ``QThreadExecutor``
    qt-async-threads  ``QtAsyncRunner``: ``await runner.run(fn)``, ``run_parallel``

Scenarios (the sizes shrink with ``--scale``, for the test suite):
    throughput   20 000 trivial tasks, every result delivered to a GUI-thread slot; submitted
                 in slices of 200 per event-loop turn for everyone.  µs per task, GUI ms spent
                 in the submit calls, and the worst gap of a 1 ms precise QTimer (the worst
                 GUI stall while submitting and running).
    roundtrip    1 000 sequential round trips (submit, result on the GUI thread, next): median.
    progress     one task reporting 200 000 progress updates, against the bare loop (200 000
                 no-op calls on a thread): wall time until the result and every update have
                 been delivered, GUI updates delivered, worst gap of the 1 ms timer (and
                 its worst gap during the bare loop: the GIL's floor).
    memory       10 000 tasks queued behind 8 blocked workers, each with its result hooked up:
                 the growth of the process's resident set (RSS: it counts Qt's C++ objects
                 too, which tracemalloc cannot see), and of the Python heap (tracemalloc,
                 measured in a second pass so that tracing does not inflate the RSS figure).
    await        1 000 sequential awaits of a trivial function under qasync: median latency.
    await_batch  10 000 awaited calls at once: total time and the worst gap of a 5 ms timer.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# superqt and qt-async-threads reach Qt through qtpy: make it pick the binding under test.
os.environ.setdefault("QT_API", "pyside6")

# Reused, not copied: the 1 ms gap meter, the GUI-thread receiver and the tutorial /
# executor / casare_workers contenders come from the core benchmark; the 5 ms gap meter
# and the awaited calls from the asyncio one.  (Both live beside this file.)
import bench_asyncio
import bench_core
from _common import GapMeter, load_average
from PySide6.QtCore import QThreadPool, QTimer, Slot
from PySide6.QtWidgets import QApplication

THREADS = bench_core.THREADS
N_WARMUP = 50
#: Seconds without a single delivery after which a cell gives up and reports lost results.
STALL_S = 20.0
#: A frame at 60 Hz, in ms: the core issue's bound for a GUI stall and a progress update.
FRAME_MS = 16.0
DOCS = Path(__file__).resolve().parent.parent / "docs"


@dataclass(frozen=True)
class Sizes:
    tasks: int = 20_000
    slice: int = 200
    roundtrips: int = 1_000
    progress: int = 200_000
    queued: int = 10_000
    awaits: int = 1_000
    batch: int = 10_000

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        full = cls()
        if scale == 1:
            return full

        def shrink(value: int, floor: int) -> int:
            return max(floor, round(value * scale))

        return cls(
            tasks=shrink(full.tasks, 20),
            slice=shrink(full.slice, 5),
            roundtrips=shrink(full.roundtrips, 5),
            progress=shrink(full.progress, 100),
            queued=shrink(full.queued, 20),
            awaits=shrink(full.awaits, 5),
            batch=shrink(full.batch, 20),
        )


# -- what runs: contenders, variants, and the scenarios a contender cannot do ---------------

CONTENDERS: dict[str, str] = {
    "casare": "casare_workers",
    "executor": "concurrent.futures bridge",
    "tutorial": "tutorial QRunnable",
    "superqt": "superqt",
    "qasync": "qasync",
    "qt-async-threads": "qt-async-threads",
}

#: The module each contender needs besides PySide6 and qasync (every process runs qasync).
REQUIRES: dict[str, str] = {
    "casare": "casare_workers",
    "superqt": "superqt",
    "qt-async-threads": "qt_async_threads",
}

SCENARIOS: dict[str, str] = {
    "throughput": "Throughput",
    "roundtrip": "Round trip",
    "progress": "Progress flood",
    "memory": "Memory of queued tasks",
    "await": "Await latency under qasync",
    "await_batch": "Awaited calls at once under qasync",
}


@dataclass(frozen=True)
class Row:
    """One measured cell: a way of doing a scenario with one contender."""

    scenario: str
    contender: str
    variant: str
    how: str

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.contender}/{self.variant}"


PLAN: tuple[Row, ...] = (
    Row("throughput", "casare", "then", "`manager.submit(fn, i).then(slot)`"),
    Row("throughput", "casare", "signals", "`manager.submit(fn, i).signals.result.connect(slot)`"),
    Row("throughput", "casare", "map", "`manager.map(fn, items).then(slot)` (one task)"),
    Row("throughput", "executor", "bridge", "`pool.submit(fn, i)`, done callback emits a signal"),
    Row("throughput", "tutorial", "runnable", "`pool.start(Worker(fn, i))`, own signals object"),
    Row("throughput", "superqt", "create_worker", "`create_worker(fn, i, _connect=...)`"),
    Row(
        "throughput", "qasync", "run_in_executor", "`loop.run_in_executor(None, fn, i)` + callback"
    ),
    Row(
        "throughput",
        "qt-async-threads",
        "run",
        "`start_coroutine(...)`: `await runner.run(fn, i)`",
    ),
    Row("throughput", "qt-async-threads", "run_parallel", "`async for r in run_parallel(fns)`"),
    Row("roundtrip", "casare", "then", "`manager.submit(fn, i).then(slot)`"),
    Row("roundtrip", "casare", "signals", "`manager.submit(fn, i).signals.result.connect(slot)`"),
    Row("roundtrip", "executor", "bridge", "`pool.submit(fn, i)`, done callback emits a signal"),
    Row("roundtrip", "tutorial", "runnable", "`pool.start(Worker(fn, i))`, own signals object"),
    Row("roundtrip", "superqt", "create_worker", "`create_worker(fn, i, _connect=...)`"),
    Row(
        "roundtrip", "qasync", "run_in_executor", "`loop.run_in_executor(None, fn, i)` + callback"
    ),
    Row(
        "roundtrip", "qt-async-threads", "run", "`start_coroutine(...)`: `await runner.run(fn, i)`"
    ),
    Row("progress", "casare", "ctx.progress", "`ctx.progress(i, n)` (coalesced per frame)"),
    Row("progress", "executor", "bridge", "`bridge.progress.emit(i)` per update"),
    Row("progress", "tutorial", "runnable", "`self.signals.progress.emit(i)` per update"),
    Row("progress", "superqt", "yield", "generator worker: `yield i` (`yielded` signal)"),
    Row("progress", "qasync", "call_soon_threadsafe", "`loop.call_soon_threadsafe(update, i)`"),
    Row("memory", "casare", "then", "`manager.submit(fn, i).then(slot)`"),
    Row("memory", "casare", "signals", "`manager.submit(fn, i).signals.result.connect(slot)`"),
    Row("memory", "casare", "map", "`manager.map(fn, items).then(slot)` (one task)"),
    Row("memory", "executor", "bridge", "`pool.submit(fn, i)` + done callback"),
    Row("memory", "tutorial", "runnable", "`pool.start(Worker(fn, i))`, own signals object"),
    Row("memory", "superqt", "create_worker", "`create_worker(fn, i, _connect=...)`"),
    Row("memory", "qasync", "run_in_executor", "`loop.run_in_executor(None, fn, i)` + callback"),
    Row("memory", "qt-async-threads", "run", "`start_coroutine(...)`: `await runner.run(fn, i)`"),
    Row("await", "casare", "await", "`await manager.submit(fn, i)`"),
    Row("await", "executor", "run_in_executor", "`await loop.run_in_executor(pool, fn, i)`"),
    Row("await", "qasync", "run_in_executor", "`await loop.run_in_executor(None, fn, i)`"),
    Row("await", "qasync", "to_thread", "`await asyncio.to_thread(fn, i)`"),
    Row("await", "qt-async-threads", "run", "`await runner.run(fn, i)` (its own coroutines)"),
    Row("await_batch", "casare", "map", "`await manager.map(fn, items)`"),
    Row("await_batch", "casare", "gather", "`await gather(*(manager.submit(fn, i) ...))`"),
    Row("await_batch", "executor", "gather", "`await gather(*(run_in_executor(pool, ...)))`"),
    Row("await_batch", "qasync", "gather", "`await gather(*(run_in_executor(None, ...)))`"),
    Row("await_batch", "qt-async-threads", "run_parallel", "`async for r in run_parallel(fns)`"),
)

#: Scenarios a contender has no way to do, and why (shown in the table, never faked).
NOT_AVAILABLE: dict[tuple[str, str], str] = {
    ("progress", "qt-async-threads"): (
        "no progress channel: a coroutine resumes only when the function returns; a "
        "hand-made Qt signal from the function is the concurrent.futures bridge row"
    ),
    ("await", "tutorial"): "signals only: nothing to await without writing a future bridge",
    ("await", "superqt"): "signals only (no awaitable, no asyncio integration)",
    ("await_batch", "tutorial"): "signals only: nothing to await",
    ("await_batch", "superqt"): "signals only (no awaitable, no asyncio integration)",
}

#: The casare_workers row each scenario's ratios are taken against.
REFERENCE: dict[str, str] = {
    "throughput": "throughput/casare/then",
    "roundtrip": "roundtrip/casare/then",
    "progress": "progress/casare/ctx.progress",
    "memory": "memory/casare/then",
    "await": "await/casare/await",
    "await_batch": "await_batch/casare/map",
}

#: Per scenario: (field, column title, format); the first field is the headline one.
COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "throughput": (
        ("us_per_task", "µs/task", "{:.1f}"),
        ("gui_submit_ms", "GUI ms submitting", "{:.0f}"),
        ("worst_gap_ms", "worst gap of a 1 ms timer, ms", "{:.1f}"),
    ),
    "roundtrip": (
        ("median_us", "median µs", "{:.1f}"),
        ("worst_gap_ms", "worst gap of a 1 ms timer, ms", "{:.1f}"),
    ),
    "progress": (
        ("wall_ms", "wall ms", "{:.0f}"),
        ("ratio_vs_bare", "x bare loop", "{:.1f}"),
        ("gui_updates", "GUI updates", "{:.0f}"),
        ("worst_gap_ms", "worst gap of a 1 ms timer, ms", "{:.1f}"),
        ("bare_gap_ms", "the bare loop's own worst gap, ms", "{:.1f}"),
    ),
    "memory": (
        ("rss_mb", "RSS MB per 10 000", "{:.2f}"),
        ("py_mb", "Python heap MB per 10 000", "{:.2f}"),
    ),
    "await": (
        ("median_us", "median µs", "{:.1f}"),
        ("p90_us", "p90 µs", "{:.1f}"),
    ),
    "await_batch": (
        ("total_ms", "total ms", "{:.1f}"),
        ("worst_gap_ms", "worst gap of a 5 ms timer, ms", "{:.1f}"),
    ),
}


def trivial(i: int) -> int:
    return i


# -- the contenders for the GUI scenarios (bench_core's interface) --------------------------


class TimedReceiver(bench_core.Receiver):
    """bench_core's GUI-thread receiver, also noting when the last progress update came."""

    def __init__(self) -> None:
        super().__init__()
        self.last_progress = 0.0

    @Slot(int)
    def on_progress(self, value: int) -> None:
        self.progress_updates += 1
        self.last_progress = time.perf_counter()

    @Slot(object)
    def on_progress_obj(self, value: object) -> None:
        self.progress_updates += 1
        self.last_progress = time.perf_counter()

    @Slot("qint64", "qint64")
    def on_progress2(self, current: int, total: int) -> None:
        self.progress_updates += 1
        self.last_progress = time.perf_counter()


class Superqt(bench_core.Contender):
    """superqt's ``create_worker``: a QRunnable + signals QObject per task, global pool."""

    name = "superqt"

    def __init__(self, receiver: bench_core.Receiver) -> None:
        super().__init__(receiver)
        utils: Any = importlib.import_module("superqt.utils")
        self._create = utils.create_worker
        # superqt always starts workers on the global pool: give it the same 8 threads.
        self.pool = QThreadPool.globalInstance()
        self.pool.setMaxThreadCount(THREADS)

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        # With ``_connect`` the worker starts itself (on a 1 ms timer when a loop runs).
        self._create(fn, arg, _connect={"returned": self.receiver.on_result})

    def start_flood(self, n: int) -> None:
        receiver = self.receiver
        assert isinstance(receiver, TimedReceiver)

        def flood() -> Any:
            yield from range(n)
            return n

        self._create(
            flood, _connect={"yielded": receiver.on_progress_obj, "returned": receiver.on_result}
        )

    def close(self) -> None:
        self.pool.waitForDone()


class Qasync(bench_core.Contender):
    """``loop.run_in_executor(None, ...)`` on qasync's ``QThreadExecutor`` (8 QThreads)."""

    name = "qasync"

    def __init__(self, receiver: bench_core.Receiver) -> None:
        super().__init__(receiver)
        qasync: Any = importlib.import_module("qasync")
        self.loop = asyncio.get_running_loop()
        # The loop shuts its default executor down (and joins it) when it closes.
        self.loop.set_default_executor(qasync.QThreadExecutor(THREADS))

    def _done(self, future: asyncio.Future[int]) -> None:
        self.receiver.on_result(future.result())

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        # The cheapest way to get a result back without a coroutine per task.
        self.loop.run_in_executor(None, fn, arg).add_done_callback(self._done)

    def start_flood(self, n: int) -> None:
        # asyncio has no progress API: the way back to the loop thread is
        # call_soon_threadsafe (in qasync, a queued signal and then a zero timer).
        call, update = self.loop.call_soon_threadsafe, self.receiver.on_progress

        def flood(_: int) -> int:
            for i in range(n):
                call(update, i)
            return n

        self.submit(flood, 0)


class QtAsyncThreads(bench_core.Contender):
    """qt-async-threads: coroutines driven by its own runner on a ThreadPoolExecutor."""

    name = "qt-async-threads"

    def __init__(self, receiver: bench_core.Receiver) -> None:
        super().__init__(receiver)
        module: Any = importlib.import_module("qt_async_threads")
        self.runner = module.QtAsyncRunner(THREADS)

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        self.runner.start_coroutine(self._one(fn, arg))

    async def _one(self, fn: Callable[[int], int], arg: int) -> None:
        self.receiver.on_result(await self.runner.run(fn, arg))

    def submit_many(self, fn: Callable[[int], int], args: range) -> None:
        self.runner.start_coroutine(self._many(fn, args))

    async def _many(self, fn: Callable[[int], int], args: range) -> None:
        on_result = self.receiver.on_result
        async for value in self.runner.run_parallel(functools.partial(fn, a) for a in args):
            on_result(value)

    def close(self) -> None:
        self.runner.close()


def make_contender(row: Row, receiver: bench_core.Receiver) -> bench_core.Contender:
    kinds: dict[tuple[str, str], type[bench_core.Contender]] = {
        ("casare", "then"): bench_core.CasareThen,
        ("casare", "signals"): bench_core.CasareSignals,
        ("casare", "map"): bench_core.CasareMap,
        ("casare", "ctx.progress"): bench_core.CasareThen,
        ("executor", "bridge"): bench_core.Executor,
        ("tutorial", "runnable"): bench_core.Tutorial,
    }
    kind = kinds.get((row.contender, row.variant))
    if kind is not None:
        return kind(receiver)
    return {"superqt": Superqt, "qasync": Qasync, "qt-async-threads": QtAsyncThreads}[
        row.contender
    ](receiver)


#: Variants that hand all items over in one call (a batch API) instead of task by task.
BATCH_VARIANTS = frozenset({"map", "run_parallel"})


# -- the GUI scenarios (run inside the qasync loop) -------------------------------------------


def until_count(receiver: bench_core.Receiver, count: int) -> asyncio.Future[float]:
    """A future resolved with the time at which ``receiver`` has seen ``count`` results."""
    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def check() -> None:  # runs on the GUI thread, in the result slot
        if receiver.count >= count and not future.done():
            future.set_result(time.perf_counter())

    receiver.on_done = check
    check()
    return future


async def settle(receiver: TimedReceiver) -> None:
    """Wait until no progress update has arrived for 50 ms (queued signals drained)."""
    while True:
        before = receiver.progress_updates
        await asyncio.sleep(0.05)
        if receiver.progress_updates == before:
            return


class LostResultsError(RuntimeError):
    """Deliveries stopped before every result arrived (reported, never hidden)."""


async def guarded(
    awaitable: Awaitable[Any], progress: Callable[[], int], expected: int, what: str
) -> Any:
    """Await ``awaitable``, failing if ``progress()`` stops moving for ``STALL_S`` seconds.

    A contender that loses a wake-up never delivers some results; without this the cell
    would hang until the subprocess timeout instead of saying what happened.
    """
    future = asyncio.ensure_future(awaitable)
    last, changed = progress(), time.monotonic()
    while True:
        done, _ = await asyncio.wait({future}, timeout=1.0)
        if done:
            return future.result()
        now = progress()
        if now != last:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed > STALL_S:
            future.cancel()
            raise LostResultsError(
                f"{expected - now} of {expected} {what} never arrived "
                f"(nothing delivered for {STALL_S:.0f} s)"
            )


async def warm_up(contender: bench_core.Contender) -> None:
    receiver = contender.receiver
    done = until_count(receiver, N_WARMUP)
    for i in range(N_WARMUP):
        contender.submit(trivial, i)
    await guarded(done, lambda: receiver.count, N_WARMUP, "warm-up results")
    receiver.count = 0


async def scenario_throughput(
    row: Row, contender: bench_core.Contender, sizes: Sizes
) -> dict[str, float]:
    receiver = contender.receiver
    n = sizes.tasks
    done = until_count(receiver, n)
    meter = GapMeter()
    spent = 0.0
    next_index = 0

    def submit_slice() -> None:  # one event-loop turn: a Qt zero timer, for everyone
        nonlocal spent, next_index
        began = time.perf_counter()
        if row.variant in BATCH_VARIANTS:
            contender.submit_many(trivial, range(n))
            next_index = n
        else:
            end = min(n, next_index + sizes.slice)
            for i in range(next_index, end):
                contender.submit(trivial, i)
            next_index = end
        spent += time.perf_counter() - began
        if next_index < n:
            QTimer.singleShot(0, submit_slice)

    meter.start()
    began = time.perf_counter()
    QTimer.singleShot(0, submit_slice)
    finished = await guarded(done, lambda: receiver.count, n, "results")
    gap = meter.stop()
    return {
        "us_per_task": (finished - began) / n * 1e6,
        "gui_submit_ms": spent * 1e3,
        "worst_gap_ms": gap * 1e3,
    }


async def scenario_roundtrip(
    row: Row, contender: bench_core.Contender, sizes: Sizes
) -> dict[str, float]:
    receiver = contender.receiver
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    samples: list[float] = []
    sent = 0.0

    def fire() -> None:
        nonlocal sent
        sent = time.perf_counter()
        contender.submit(trivial, len(samples))

    def arrived() -> None:  # the result slot, on the GUI thread: send the next one
        samples.append(time.perf_counter() - sent)
        if len(samples) < sizes.roundtrips:
            fire()
        elif not future.done():
            future.set_result(None)

    receiver.on_done = arrived
    meter = GapMeter()
    meter.start()
    fire()
    await guarded(future, lambda: len(samples), sizes.roundtrips, "round trips")
    gap = meter.stop()
    return {"median_us": statistics.median(samples) * 1e6, "worst_gap_ms": gap * 1e3}


async def bare_loop_gap(n: int) -> float:
    """The 1 ms timer's worst gap while the bare loop runs on a thread, reporting nothing.

    The floor for every contender: a thread running pure Python holds the GIL, and the GUI
    thread gets it back only at the interpreter's switch interval (5 ms) or later.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        def noop(*args: object) -> None:
            return None

        for i in range(n):
            noop(i + 1, n)
        loop.call_soon_threadsafe(finished.set_result, None)

    meter = GapMeter()
    meter.start()
    thread = threading.Thread(target=run)
    thread.start()
    await asyncio.wait_for(finished, 600)
    gap = meter.stop()
    thread.join()
    return gap


async def scenario_progress(
    row: Row, contender: bench_core.Contender, sizes: Sizes
) -> dict[str, float]:
    receiver = contender.receiver
    assert isinstance(receiver, TimedReceiver)
    n = sizes.progress
    bare = min(bench_core.bare_loop(n) for _ in range(3))
    bare_gap = await bare_loop_gap(n)
    done = until_count(receiver, 1)
    meter = GapMeter()
    meter.start()
    began = time.perf_counter()
    contender.start_flood(n)
    finished = await guarded(
        done, lambda: receiver.progress_updates + receiver.count, 1, "results"
    )
    # Patterns that queue a signal per update may still be delivering them.
    await settle(receiver)
    gap = meter.stop()
    wall = max(finished, receiver.last_progress) - began
    return {
        "wall_ms": wall * 1e3,
        "bare_ms": bare * 1e3,
        "ratio_vs_bare": wall / bare,
        "gui_updates": float(receiver.progress_updates),
        "worst_gap_ms": gap * 1e3,
        "bare_gap_ms": bare_gap * 1e3,
    }


def resident_bytes() -> int:
    """The process's resident set size (psutil if installed, else Linux's /proc)."""
    try:
        psutil: Any = importlib.import_module("psutil")
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


async def scenario_memory(
    row: Row, contender: bench_core.Contender, sizes: Sizes
) -> dict[str, float]:
    receiver = contender.receiver
    n = sizes.queued

    async def queue_behind_blocked_workers(measure: Callable[[], int]) -> int:
        gate = threading.Event()
        started: list[int] = []

        def blocker(i: int) -> int:
            started.append(i)
            gate.wait(120)
            return i

        receiver.count = 0
        done = until_count(receiver, THREADS + n)
        for i in range(THREADS):
            contender.submit(blocker, i)
        deadline = time.monotonic() + 60
        while len(started) < THREADS:  # every worker parked: nothing queued can run
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(started)} of {THREADS} workers started")
            await asyncio.sleep(0.005)
        gc.collect()
        before = measure()
        if row.variant in BATCH_VARIANTS:
            contender.submit_many(trivial, range(n))
        else:
            for i in range(n):
                contender.submit(trivial, i)
        gc.collect()
        grown = measure() - before
        gate.set()
        await guarded(done, lambda: receiver.count, THREADS + n, "results")
        return grown

    rss = await queue_behind_blocked_workers(resident_bytes)
    tracemalloc.start()
    try:
        py = await queue_behind_blocked_workers(lambda: tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    per_10k = 10_000 / n / 2**20
    return {"rss_mb": rss * per_10k, "py_mb": py * per_10k}


GUI_SCENARIOS = {
    "throughput": scenario_throughput,
    "roundtrip": scenario_roundtrip,
    "progress": scenario_progress,
    "memory": scenario_memory,
}


# -- the await scenarios -----------------------------------------------------------------------


def on_runner(runner: Any, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """Run a qt-async-threads coroutine on its runner; an asyncio future for its outcome.

    Its coroutines yield the runner's own awaitables, which an asyncio task rejects, so
    they cannot be awaited from asyncio directly: the runner drives them on the same Qt
    event loop that qasync runs.
    """
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def wrapper() -> None:
        try:
            value = await coro
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(value)

    runner.start_coroutine(wrapper())
    return future


async def run_await(row: Row, sizes: Sizes, closers: list[Callable[[], object]]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    call: Callable[[int], Awaitable[int]]
    samples: list[float] = []
    if row.contender == "casare":
        from casare_workers import WorkerManager

        manager = WorkerManager(pools={"io": THREADS})
        closers.append(manager.shutdown)
        call = bench_asyncio.make_call("await", manager, loop)
    elif row.contender == "qasync":
        qasync: Any = importlib.import_module("qasync")
        loop.set_default_executor(qasync.QThreadExecutor(THREADS))
        name = "executor" if row.variant == "run_in_executor" else "to_thread"
        call = bench_asyncio.make_call(name, None, loop)
    elif row.contender == "executor":
        pool = concurrent.futures.ThreadPoolExecutor(THREADS)
        closers.append(pool.shutdown)

        def call(i: int) -> Awaitable[int]:
            return loop.run_in_executor(pool, trivial, i)

    elif row.contender == "qt-async-threads":
        module: Any = importlib.import_module("qt_async_threads")
        runner = module.QtAsyncRunner(THREADS)
        closers.append(runner.close)
        run: Callable[[int], Awaitable[int]] = functools.partial(runner.run, trivial)
        driven = on_runner(runner, bench_asyncio.time_awaits(run, sizes.awaits, samples))
        return await guarded(driven, lambda: len(samples), sizes.awaits, "awaits")  # type: ignore[no-any-return]
    else:
        raise ValueError(row.key)
    timed = bench_asyncio.time_awaits(call, sizes.awaits, samples)
    return await guarded(timed, lambda: len(samples), sizes.awaits, "awaits")  # type: ignore[no-any-return]


async def run_await_batch(
    row: Row, sizes: Sizes, closers: list[Callable[[], object]]
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    batch: Callable[[range], Awaitable[int]]
    #: Results seen so far, where the contender lets us count them (for the stall guard).
    seen = [0]
    if row.contender == "casare":
        from casare_workers import WorkerManager

        manager = WorkerManager(pools={"io": THREADS})
        closers.append(manager.shutdown)

        async def batch(items: range) -> int:
            if row.variant == "map":
                return len(await manager.map(trivial, items))
            return len(await asyncio.gather(*(manager.submit(trivial, i) for i in items)))

    elif row.contender in ("qasync", "executor"):
        pool: concurrent.futures.Executor | None = None
        if row.contender == "qasync":
            qasync: Any = importlib.import_module("qasync")
            loop.set_default_executor(qasync.QThreadExecutor(THREADS))
        else:
            pool = concurrent.futures.ThreadPoolExecutor(THREADS)
            closers.append(pool.shutdown)

        async def batch(items: range) -> int:
            calls = (loop.run_in_executor(pool, trivial, i) for i in items)
            return len(await asyncio.gather(*calls))

    elif row.contender == "qt-async-threads":
        module: Any = importlib.import_module("qt_async_threads")
        runner = module.QtAsyncRunner(THREADS)
        closers.append(runner.close)

        async def parallel(items: range) -> int:
            seen[0] = 0
            async for _value in runner.run_parallel(functools.partial(trivial, i) for i in items):
                seen[0] += 1
            return seen[0]

        def batch(items: range) -> Awaitable[int]:
            return on_runner(runner, parallel(items))

    else:
        raise ValueError(row.key)
    # Threads and code paths warm (not measured).
    await guarded(batch(range(N_WARMUP)), lambda: seen[0], N_WARMUP, "warm-up results")
    meter = GapMeter(bench_asyncio.GAP_TIMER_MS)
    meter.start()
    await asyncio.sleep(0.05)  # the meter's baseline ticks
    began = time.perf_counter()
    # Where results cannot be counted one by one, the guard sees none and allows STALL_S.
    count = await guarded(batch(range(sizes.batch)), lambda: seen[0], sizes.batch, "results")
    total = time.perf_counter() - began
    await asyncio.sleep(0.05)  # anything still queued behind the result shows in the gap
    gap = meter.stop()
    if count != sizes.batch:
        raise RuntimeError(f"{count} results for {sizes.batch} calls")
    return {"total_ms": total * 1e3, "worst_gap_ms": gap * 1e3}


# -- one cell, in this process ---------------------------------------------------------------


def run_cell(key: str, sizes: Sizes) -> dict[str, float]:
    """Run one cell of the plan in this (fresh) process; its figures."""
    row = {r.key: r for r in PLAN}[key]
    qasync: Any = importlib.import_module("qasync")
    app = QApplication.instance() or QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closers: list[Callable[[], object]] = []

    async def main() -> dict[str, float]:
        if row.scenario == "await":
            return await run_await(row, sizes, closers)
        if row.scenario == "await_batch":
            return await run_await_batch(row, sizes, closers)
        contender = make_contender(row, TimedReceiver())
        closers.append(contender.close)
        await warm_up(contender)
        return await GUI_SCENARIOS[row.scenario](row, contender, sizes)

    with loop:
        try:
            result: dict[str, float] = loop.run_until_complete(main())
        finally:
            for close in reversed(closers):
                close()
    return result


# -- the orchestrator --------------------------------------------------------------------------


def installed(contender: str) -> bool:
    module = REQUIRES.get(contender)
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def run_all(
    rows: list[Row], repeat: int, scale: float
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[str]]]:
    """Every row ``repeat`` times, one fresh process each, repetitions interleaved.

    Returns the figures of the runs that succeeded and, per row, the last line of the
    error of each run that failed.
    """
    runs: dict[str, list[dict[str, float]]] = {row.key: [] for row in rows}
    errors: dict[str, list[str]] = {}
    for rep in range(repeat):
        for row in rows:
            print(f"[{rep + 1}/{repeat}] {row.key}", file=sys.stderr, flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--cell", row.key, "--scale", str(scale)],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
            lines = out.stdout.strip().splitlines()
            if out.returncode != 0 or not lines:
                tail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
                errors.setdefault(row.key, []).append(tail)
                print(f"{row.key}: FAILED\n{out.stderr}", file=sys.stderr)
                continue
            runs[row.key].append(json.loads(lines[-1]))
    return runs, errors


def medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        key: {field: statistics.median(run[field] for run in values) for field in values[0]}
        for key, values in runs.items()
        if values
    }


def versions() -> dict[str, str]:
    found = {}
    for dist in ("PySide6-Essentials", "qasync", "superqt", "qt-async-threads"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def machine_line(meta: dict[str, Any]) -> str:
    v = meta["versions"]
    loads = "; ".join(f"{before} before, {after} after" for before, after in run_loads(meta))
    return (
        f"Python {meta['python']}, PySide6 {v['PySide6-Essentials']}, qasync {v['qasync']}, "
        f"superqt {v['superqt']}, qt-async-threads {v['qt-async-threads']}; "
        f"{meta['cpus']} CPUs, {meta['platform']}; load average (1/5/15 min) {loads}"
    )


def run_loads(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The load averages before and after each run of the command that ``meta`` covers."""
    return [(m["load_before"], m["load_after"]) for m in meta.get("merged", [meta])]


def merge(saved: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``--json`` files of the same command as one: every process's figures pooled.

    Running the command more than once, at different moments, and taking the median of
    all the processes is how a busy shared machine is kept from deciding the figures.
    """
    if len(saved) == 1:
        return saved[0]
    first = saved[0]
    meta = dict(first["meta"], merged=[s["meta"] for s in saved])
    meta["repeat"] = sum(s["meta"]["repeat"] for s in saved)
    runs: dict[str, list[dict[str, float]]] = {}
    errors: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for s in saved:
        if s["meta"]["scale"] != meta["scale"]:
            raise SystemExit("--render: the files were made at different --scale values")
        for key, values in s["runs"].items():
            runs.setdefault(key, []).extend(values)
        for key, lines in s["errors"].items():
            errors.setdefault(key, []).extend(lines)
        skipped.update(s.get("skipped", {}))
    skipped = {key: why for key, why in skipped.items() if not runs.get(key)}
    return {"meta": meta, "runs": runs, "errors": errors, "skipped": skipped}


# -- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    issue: str
    text: str
    measured: str
    met: bool | None  # None: not measured in this run


def evaluate_targets(results: dict[str, dict[str, float]]) -> list[Target]:
    """The targets of the core and bridge issues, each checked against ``results``."""

    def get(key: str, field: str) -> float | None:
        return results.get(key, {}).get(field)

    targets: list[Target] = []

    def ratio_target(
        issue: str, text: str, slow: tuple[str, str], fast: tuple[str, str], at_least: float
    ) -> None:
        a, b = get(*slow), get(*fast)
        if a is None or b is None:
            targets.append(Target(issue, text, "not measured", None))
            return
        targets.append(Target(issue, text, f"{a:.1f} / {b:.1f} = {a / b:.2f}x", a / b >= at_least))

    tp = "us_per_task"
    ratio_target(
        "core (c1)",
        "`signals.result` per task no slower than the executor bridge (executor ÷ casare ≥ 1)",
        ("throughput/executor/bridge", tp),
        ("throughput/casare/signals", tp),
        1.0,
    )
    ratio_target(
        "core (c1)",
        "`signals.result` ≥ 3x faster per task than the tutorial pattern",
        ("throughput/tutorial/runnable", tp),
        ("throughput/casare/signals", tp),
        3.0,
    )
    ratio_target(
        "core (c2)",
        "`then()` ≥ 3x faster per task than the executor bridge",
        ("throughput/executor/bridge", tp),
        ("throughput/casare/then", tp),
        3.0,
    )
    per_item = get("throughput/casare/map", tp)
    targets.append(
        Target(
            "core",
            "`map` ≤ 3 µs per item",
            "not measured" if per_item is None else f"{per_item:.2f} µs",
            None if per_item is None else per_item <= 3.0,
        )
    )
    gaps = {
        key: results[key]["worst_gap_ms"]
        for key in (
            "throughput/casare/then",
            "throughput/casare/signals",
            "throughput/casare/map",
            "roundtrip/casare/then",
            "roundtrip/casare/signals",
            "progress/casare/ctx.progress",
        )
        if key in results
    }
    if gaps:
        worst_key = max(gaps, key=lambda k: gaps[k])
        name = "/".join(worst_key.split("/")[::2])
        measured = f"worst {gaps[worst_key]:.1f} ms ({name})"
        floor = get("progress/casare/ctx.progress", "bare_gap_ms")
        if floor is not None:
            measured += f"; a bare Python loop on a thread alone: {floor:.1f} ms"
        targets.append(
            Target(
                "core",
                f"worst gap of a 1 ms timer ≤ {FRAME_MS:.0f} ms (every casare_workers row of "
                "throughput, round trip and progress)",
                measured,
                gaps[worst_key] <= FRAME_MS,
            )
        )
    else:
        targets.append(Target("core", "worst gap of a 1 ms timer ≤ 16 ms", "not measured", None))
    flood = results.get("progress/casare/ctx.progress")
    if flood is None:
        targets.append(Target("core", "progress flood within 3x of the bare loop", "-", None))
        targets.append(Target("core", "progress: ≤ 1 GUI update per frame", "-", None))
    else:
        targets.append(
            Target(
                "core",
                "progress flood within 3x of the bare loop",
                f"{flood['wall_ms']:.0f} ms vs {flood['bare_ms']:.0f} ms = "
                f"{flood['ratio_vs_bare']:.2f}x",
                flood["ratio_vs_bare"] <= 3.0,
            )
        )
        frames = flood["wall_ms"] / FRAME_MS
        targets.append(
            Target(
                "core",
                "progress: ≤ 1 GUI update per frame",
                f"{flood['gui_updates']:.0f} updates in {frames:.1f} frames",
                flood["gui_updates"] <= frames + 1,
            )
        )
    ratio_target(
        "core",
        "round trip (`then()`) no slower than the executor bridge (executor ÷ casare ≥ 1)",
        ("roundtrip/executor/bridge", "median_us"),
        ("roundtrip/casare/then", "median_us"),
        1.0,
    )
    ratio_target(
        "bridge",
        "await latency no slower than qasync's `run_in_executor` (qasync ÷ casare ≥ 1)",
        ("await/qasync/run_in_executor", "median_us"),
        ("await/casare/await", "median_us"),
        1.0,
    )
    ratio_target(
        "bridge",
        "await latency no slower than `asyncio.to_thread` (to_thread ÷ casare ≥ 1)",
        ("await/qasync/to_thread", "median_us"),
        ("await/casare/await", "median_us"),
        1.0,
    )
    ratio_target(
        "bridge",
        "10 000 awaited calls (`await manager.map`) ≥ 1.4x faster than gather of "
        "`run_in_executor`",
        ("await_batch/qasync/gather", "total_ms"),
        ("await_batch/casare/map", "total_ms"),
        1.4,
    )
    batch_gap = get("await_batch/casare/map", "worst_gap_ms")
    targets.append(
        Target(
            "bridge",
            "10 000 awaited calls: worst gap of a 5 ms timer ≤ 50 ms",
            "not measured" if batch_gap is None else f"{batch_gap:.1f} ms",
            None if batch_gap is None else batch_gap <= 50.0,
        )
    )
    return targets


# -- the page ------------------------------------------------------------------------------------


def command_lines(meta: dict[str, Any]) -> list[str]:
    merged = meta.get("merged")
    if not merged:
        return [f"Command: `{meta['command']}`"]
    lines = [
        f"Commands: the same benchmark run {len(merged)} times, one after the other, and the "
        "pooled processes' median drawn by the last one:",
        "",
        "```console",
    ]
    lines += [m["command"] for m in merged]
    files = " ".join(json_argument(m["command"]) for m in merged)
    lines += [f"python benchmarks/bench_compare.py --render {files}", "```"]
    return lines


def json_argument(command: str) -> str:
    """The ``--json`` file a recorded command wrote (what ``--render`` reads back)."""
    parts = shlex.split(command)
    return parts[parts.index("--json") + 1] if "--json" in parts else "<its --json file>"


#: The hand-written reading of the figures: kept when the script rewrites the page.
READING_BEGIN = "<!-- reading: written by hand, kept by bench_compare.py -->"
READING_END = "<!-- /reading -->"


def kept_reading(page: Path) -> str:
    """The hand-written block of an existing page (with its markers), or a placeholder."""
    if page.exists():
        text = page.read_text()
        begin, end = text.find(READING_BEGIN), text.find(READING_END)
        if 0 <= begin < end:
            return text[begin : end + len(READING_END)]
    return "\n".join(
        [
            READING_BEGIN,
            "## Reading the results",
            "",
            "*Not written yet for these figures.*",
            READING_END,
        ]
    )


def render_markdown(
    results: dict[str, dict[str, float]],
    errors: dict[str, list[str]],
    skipped: dict[str, str],
    meta: dict[str, Any],
    reading: str = "",
) -> str:
    """The Markdown page: command, machine, targets, reading, one table per scenario."""
    s = Sizes.scaled(meta["scale"])

    def num(value: int) -> str:
        return f"{value:,}".replace(",", " ")

    out = [
        "# Comparison with the alternatives",
        "",
        "<!-- Written by benchmarks/bench_compare.py: re-run it rather than editing. -->",
        "",
        "casare_workers side by side with what PySide6 users write instead, measured by one",
        "command: every cell (a scenario, a contender, one way of doing it) in its own",
        "fresh process, the repetitions interleaved so that background load hits every",
        "contender alike, and each figure the median of the processes.  Each process is a",
        "`QApplication` (offscreen) driven by a `qasync.QEventLoop`, as in the application",
        "this library is for; every pool has 8 threads.  The machine is shared and has 2",
        "CPUs: read the figures as ratios.",
        "",
        *command_lines(meta),
        "",
        f"Machine: {machine_line(meta)}; median of {meta['repeat']} processes per cell.",
        "",
        "![Each scenario's headline figure per contender (log scale; casare_workers in "
        "blue)](comparison.png)",
        "",
        "## Targets",
        "",
        "The targets of the core issue (c1: results through `handle.signals`, c2: through",
        "`then()`) and of the asyncio bridge issue, checked against these figures.",
        "",
        "| issue | target | measured | met |",
        "|---|---|---|---|",
    ]
    for t in evaluate_targets(results):
        met = "not measured" if t.met is None else ("**yes**" if t.met else "**no**")
        out.append(f"| {t.issue} | {t.text} | {t.measured} | {met} |")
    out += ["", reading] if reading else []
    out += [
        "",
        "## Scenarios",
        "",
        "Ratios are the contender's figure divided by the casare_workers reference row's",
        "(marked *ref*): above 1 the contender is slower, or uses more memory.",
        "",
    ]
    intros = {
        "throughput": (
            f"{num(s.tasks)} trivial tasks, every result delivered to a slot on the GUI "
            f"thread, submitted in slices of {num(s.slice)} per event-loop turn (a batch API "
            "gets all items in one call).  *GUI ms submitting* is the time spent inside the "
            "submit calls; the worst gap of a 1 ms precise timer is the worst GUI stall while "
            "submitting and running."
        ),
        "roundtrip": (
            f"{num(s.roundtrips)} sequential round trips: submit, result on the GUI thread, next."
        ),
        "progress": (
            f"One task reporting progress {num(s.progress)} times as fast as it can; wall time "
            "until the result and every update have been delivered, against the bare loop "
            f"({num(s.progress)} no-op calls on a thread).  The last column is the timer's "
            "worst gap while that bare loop runs, reporting nothing: the floor, since pure "
            "Python on a thread holds the GIL that the GUI thread needs."
        ),
        "memory": (
            f"{num(s.queued)} trivial tasks queued behind 8 blocked workers, each with its result "
            "hooked up, scaled to 10 000.  RSS growth is the headline because it counts Qt's "
            "C++ objects (QRunnables, signal objects, connections) that tracemalloc cannot "
            "see; the Python heap (tracemalloc, a second pass, so that tracing does not "
            "inflate the RSS) shows how much of it is Python objects."
        ),
        "await": (
            f"{num(s.awaits)} sequential awaits of a trivial function on the qasync loop (after "
            f"{N_WARMUP} warm-up calls)."
        ),
        "await_batch": (
            f"{num(s.batch)} awaited calls of a trivial function started at once on the qasync "
            "loop; the worst gap of a 5 ms timer is the GUI's worst stall."
        ),
    }
    repeat = meta["repeat"]
    for scenario, title in SCENARIOS.items():
        columns = COLUMNS[scenario]
        failures: list[str] = []
        out += [f"### {title}", "", intros[scenario], ""]
        out.append(
            "| contender | how | "
            + " | ".join(title for _, title, _ in columns)
            + " | x casare_workers |"
        )
        out.append("|---" * (len(columns) + 3) + "|")
        reference = results.get(REFERENCE[scenario], {}).get(columns[0][0])
        dash = " | ".join("—" for _ in columns[1:])
        for contender, name in CONTENDERS.items():
            rows = [r for r in PLAN if r.scenario == scenario and r.contender == contender]
            if not rows:
                reason = NOT_AVAILABLE.get((scenario, contender), "not part of this scenario")
                out.append(f"| {name} | — | n/a: {reason} | {dash} | — |")
                continue
            for row in rows:
                figures = results.get(row.key)
                failed = errors.get(row.key, [])
                if figures is None:
                    why = skipped.get(row.key) or (
                        f"failed in {len(failed)} of {repeat} runs: {failed[-1]}"
                        if failed
                        else "not run"
                    )
                    out.append(f"| {name} | {row.how} | {why} | {dash} | — |")
                    continue
                if failed:
                    failures.append(
                        f"- {name}, {row.how}: **{len(failed)} of {repeat} runs failed** "
                        f"({'; '.join(sorted(set(failed)))}); the figures are the median of "
                        "the others."
                    )
                cells = [fmt.format(figures[field]) for field, _, fmt in columns]
                if row.key == REFERENCE[scenario]:
                    ratio = "*ref*"
                elif reference:
                    ratio = f"{figures[columns[0][0]] / reference:.2f}x"
                else:
                    ratio = "—"
                out.append(f"| {name} | {row.how} | " + " | ".join(cells) + f" | {ratio} |")
        out += ["", *failures, ""] if failures else [""]
    out += [
        "## Notes on fairness",
        "",
        "- Everyone submits the same way (slices per event-loop turn), to the same number of",
        "  threads, with results going to the same GUI-thread receiver.  Where a library offers",
        "  a cheaper path than the obvious one, it is used: qasync's futures get a done",
        "  callback rather than a coroutine each; qt-async-threads' batch API `run_parallel`",
        "  has its own rows next to casare_workers' `map`.",
        "- superqt starts every worker through a 1 ms single-shot timer whenever an event loop",
        "  is running (its `WorkerBase.start`), which is what an application sees; a",
        "  benchmark that spins `processEvents()` instead of running the loop would not.",
        "- qt-async-threads runs its own coroutines (they cannot be awaited from asyncio);",
        "  its await rows drive them with its runner on the same Qt event loop that qasync",
        "  runs.",
        "- Progress for qasync uses `loop.call_soon_threadsafe` per update, the asyncio way",
        "  back to the loop thread (asyncio has no progress API).",
        "- *n/a* marks a scenario a contender has no way to do; nothing is emulated for it.",
        "",
    ]
    return "\n".join(out)


#: The plot's panels: (scenario, field, title, target line or None).
PANELS: tuple[tuple[str, str, str, float | None], ...] = (
    ("throughput", "us_per_task", "throughput: µs per task", None),
    ("throughput", "worst_gap_ms", "GUI stall submitting + running: ms", FRAME_MS),
    ("roundtrip", "median_us", "round trip: median µs", None),
    ("progress", "wall_ms", "progress flood: wall ms", None),
    ("progress", "gui_updates", "progress flood: GUI updates", None),
    ("memory", "rss_mb", "10 000 queued tasks: RSS MB", None),
    ("await", "median_us", "await under qasync: median µs", None),
    ("await_batch", "total_ms", "10 000 awaited calls: ms", None),
)


def plot(results: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """A PNG with one horizontal bar chart per headline figure (log scale)."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    ticker: Any = importlib.import_module("matplotlib.ticker")
    fig, axes = pyplot.subplots(4, 2, figsize=(13, 15), layout="constrained")
    for ax, (scenario, field, panel_title, target) in zip(axes.flat, PANELS, strict=True):
        rows = [r for r in PLAN if r.scenario == scenario and r.key in results]
        labels = [f"{CONTENDERS[r.contender]}: {r.variant}" for r in rows]
        values = [max(results[r.key][field], 1e-3) for r in rows]
        colours = ["#1f77b4" if r.contender == "casare" else "#999999" for r in rows]
        ax.barh(range(len(rows)), values, color=colours)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        # Minor-tick labels collide on a short log range; the bars carry their values.
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(panel_title, fontsize=10)
        for i, value in enumerate(values):
            ax.text(value, i, f" {value:.3g}", va="center", fontsize=7)
        if target is not None:
            ax.axvline(target, color="#d62728", linestyle="--", linewidth=1)
        if values:
            ax.set_xlim(min(values) / 2, max(values) * 8)
    fig.suptitle(
        "Lower is better (log scales; casare_workers in blue, dashed: a target)\n"
        + textwrap.fill(title, 160),
        fontsize=9,
    )
    # A docs asset kept in the repository: small enough to stay under 150 kB.
    fig.savefig(path, dpi=64)
    pyplot.close(fig)


# -- entry point --------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contender", action="append", choices=sorted(CONTENDERS))
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--row", action="append", choices=[r.key for r in PLAN], help="only these cells"
    )
    parser.add_argument("--repeat", type=int, default=3, help="processes per cell (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every size (tests)")
    parser.add_argument("--out", type=Path, default=DOCS, help="where the page and plot go")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--render", type=Path, nargs="+", help="re-draw from --json files (pooled), no runs"
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # a child process: one cell
    args = parser.parse_args(None if argv is None else list(argv))
    if args.cell:
        try:
            figures = run_cell(args.cell, Sizes.scaled(args.scale))
        except Exception as exc:
            traceback.print_exc()
            # The orchestrator reports a cell's last line of stderr: make it the error.
            # Exiting at once keeps it last: finalisers at interpreter exit (a library's
            # abandoned async generators) would otherwise print their own complaints after it.
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
        print(json.dumps(figures))
        return 0
    if args.render:
        saved = merge([json.loads(path.read_text()) for path in args.render])
        meta, runs, errors = saved["meta"], saved["runs"], saved["errors"]
        skipped = saved.get("skipped", {})
    else:
        rows = [
            r
            for r in PLAN
            if (not args.contender or r.contender in args.contender)
            and (not args.scenario or r.scenario in args.scenario)
            and (not args.row or r.key in args.row)
        ]
        skipped = {
            r.key: f"not run: {REQUIRES[r.contender]} is not installed"
            for r in rows
            if not installed(r.contender)
        }
        command = ["python", "benchmarks/bench_compare.py", *sys.argv[1:]]
        meta = {
            "command": shlex.join(command),
            "python": platform.python_version(),
            "versions": versions(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "repeat": args.repeat,
            "scale": args.scale,
            "load_before": load_average(),
        }
        runs, errors = run_all([r for r in rows if r.key not in skipped], args.repeat, args.scale)
        meta["load_after"] = load_average()
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"meta": meta, "runs": runs, "errors": errors, "skipped": skipped}, indent=1
                )
            )
    results = medians(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "comparison.md"
    page = render_markdown(results, errors, skipped, meta, kept_reading(target))
    target.write_text(page)
    if not args.no_plot:
        plot(results, args.out / "comparison.png", machine_line(meta))
    print(page)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
