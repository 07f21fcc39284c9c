"""LongJob benchmark: against a hand-written QThread subclass with per-update signals.

Run (each contender and scenario in its own fresh process, repeated; medians reported)::

    python benchmarks/bench_longjob.py                 # prints a Markdown table
    python benchmarks/bench_longjob.py --repeat 7 --json out.json

Contenders:
    qthread    the app's pattern: a QThread subclass whose run() emits
               ``progress(int, int)`` for every update and ``result_ready(object)`` at
               the end, connected to slots of a GUI-thread QObject (queued connections)
    longjob    a LongJob whose work() calls ``ctx.progress(i, n)`` for every update
    longjob-async  the same work as ``async def`` (the job creates and closes its own
               asyncio loop)

Scenarios:
    latency    start-to-first-progress: ``start()`` on the GUI thread until the first
               progress slot runs there; 200 sequential jobs started 25 ms apart (more than
               a frame, so coalescing never holds an update back).  Each job reports once,
               then blocks (as an I/O-bound job would) until the GUI has seen the update.
    flood      one job reporting 200 000 progress updates as fast as it can.  Wall time
               until the result has been delivered *and* nothing is left in the queue,
               progress slot calls on the GUI thread, and the worst gap of a 1 ms precise
               QTimer running meanwhile (the GUI's worst stall; the target is one frame,
               16 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import GapMeter, machine, median_of, run_cell
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QThread, Signal, Slot

N_LATENCY = 200
LATENCY_SPACING_MS = 25
N_FLOOD = 200_000


class Receiver(QObject):
    """GUI-thread slots: counts progress updates, notes the first one and the result."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0
        self.first_at = 0.0
        self.results = 0
        #: Set when the first update reached the GUI thread (the latency job waits on it).
        self.seen = threading.Event()

    def reset(self) -> None:
        self.updates = 0
        self.first_at = 0.0
        self.results = 0
        self.seen = threading.Event()

    @Slot("qint64", "qint64")
    def on_progress(self, current: int, total: int) -> None:
        if not self.updates:
            self.first_at = time.perf_counter()
            self.seen.set()
        self.updates += 1

    @Slot(int, int)
    def on_progress_int(self, current: int, total: int) -> None:
        self.on_progress(current, total)

    @Slot(object)
    def on_result(self, value: object) -> None:
        self.results += 1


# -- contenders ------------------------------------------------------------------------------


class HandThread(QThread):
    """What the app writes by hand: one signal emit per update, from the thread."""

    progress = Signal(int, int)
    result_ready = Signal(object)

    def __init__(self, n: int, seen: threading.Event) -> None:
        super().__init__()
        self.n = n
        self.seen = seen

    def run(self) -> None:
        emit = self.progress.emit
        n = self.n
        for i in range(n):
            emit(i + 1, n)
        if n == 1:
            self.seen.wait(5)
        self.result_ready.emit(n)


class Contender:
    name = "?"

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def start(self, n: int) -> None:
        raise NotImplementedError

    def idle(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HandWritten(Contender):
    name = "qthread"

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(receiver)
        self.threads: list[HandThread] = []

    def start(self, n: int) -> None:
        thread = HandThread(n, self.receiver.seen)
        thread.progress.connect(self.receiver.on_progress_int)
        thread.result_ready.connect(self.receiver.on_result)
        self.threads.append(thread)  # kept: dropping a running QThread aborts
        thread.start()

    def idle(self) -> bool:
        done = all(t.isFinished() for t in self.threads)
        if done:
            self.threads.clear()
        return done

    def close(self) -> None:
        for thread in self.threads:
            thread.wait()


def _flood_blocking(n: int, seen: threading.Event, ctx: Any) -> int:
    progress = ctx.progress
    for i in range(n):
        progress(i + 1, n)
    if n == 1:
        seen.wait(5)
    return n


async def _flood_async(n: int, seen: threading.Event, ctx: Any) -> int:
    progress = ctx.progress
    for i in range(n):
        progress(i + 1, n)
    if n == 1:
        seen.wait(5)
    return n


class Casare(Contender):
    name = "longjob"
    target: Callable[..., Any] = staticmethod(_flood_blocking)

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(receiver)
        from casare_workers import WorkerManager

        self.manager = WorkerManager()

    def start(self, n: int) -> None:
        from casare_workers import LongJob

        job: Any = LongJob(type(self).target, args=(n, self.receiver.seen), manager=self.manager)
        job.progress.connect(self.receiver.on_progress)
        job.result.connect(self.receiver.on_result)
        job.start()  # no reference kept: the manager holds it while it matters

    def idle(self) -> bool:
        return self.manager.is_idle()

    def close(self) -> None:
        self.manager.shutdown()


class CasareAsync(Casare):
    name = "longjob-async"
    target = staticmethod(_flood_async)


CONTENDERS: dict[str, type[Contender]] = {c.name: c for c in (HandWritten, Casare, CasareAsync)}


# -- scenarios ----------------------------------------------------------------------------------


def run_until(app: QCoreApplication, done: Callable[[], bool], timeout: float = 300) -> None:
    """Run the event loop until ``done()``.

    It *waits* for events, as ``app.exec()`` does, rather than spinning: a GUI thread
    that spins holds the GIL, and a new thread then waits up to the interpreter's switch
    interval (5 ms) before its first Python instruction, which is not what an app sees.
    """
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("scenario did not finish")
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)


def idle_for(app: QCoreApplication, seconds: float) -> None:
    """Run the event loop for ``seconds`` (a 1 ms timer keeps it turning)."""
    until = time.perf_counter() + seconds
    run_until(app, lambda: time.perf_counter() >= until)


def scenario_latency(app: QCoreApplication, contender: Contender) -> dict[str, float]:
    receiver = contender.receiver
    samples: list[float] = []
    meter = GapMeter()
    meter.start()
    for _ in range(N_LATENCY):
        receiver.reset()
        idle_for(app, LATENCY_SPACING_MS / 1000)
        began = time.perf_counter()
        contender.start(1)
        run_until(app, lambda: receiver.results >= 1 and contender.idle())
        samples.append(receiver.first_at - began)
    gap = meter.stop()
    samples.sort()
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p90_us": samples[int(len(samples) * 0.9)] * 1e6,
        "worst_gap_ms": gap * 1e3,
    }


def scenario_flood(app: QCoreApplication, contender: Contender) -> dict[str, float]:
    receiver = contender.receiver
    receiver.reset()
    meter = GapMeter()
    meter.start()
    began = time.perf_counter()
    contender.start(N_FLOOD)
    run_until(app, lambda: receiver.results >= 1 and contender.idle())
    app.processEvents()  # anything still queued counts too
    wall = time.perf_counter() - began
    gap = meter.stop()
    return {
        "wall_ms": wall * 1e3,
        "gui_updates": float(receiver.updates),
        "worst_gap_ms": gap * 1e3,
    }


SCENARIOS = {"latency": scenario_latency, "flood": scenario_flood}


def run_one(contender_name: str, scenario: str) -> dict[str, float]:
    app = QCoreApplication.instance() or QCoreApplication([])
    receiver = Receiver()
    contender = CONTENDERS[contender_name](receiver)
    # A 1 ms timer keeps the waiting loop turning (the flood's meter, the warm-up's).
    ticker = GapMeter()
    ticker.start()
    for _ in range(5):  # warm up thread creation and code paths (not measured)
        receiver.reset()
        contender.start(10)
        run_until(app, lambda: receiver.results >= 1 and contender.idle())
    ticker.stop()
    result = SCENARIOS[scenario](app, contender)
    contender.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contender", choices=sorted(CONTENDERS))
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per cell")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    if args.contender and args.scenario:
        print(json.dumps(run_one(args.contender, args.scenario)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {}
    # Interleaved (round-robin) so that background load hits every contender alike.
    for _ in range(args.repeat):
        for scenario in SCENARIOS:
            for contender in CONTENDERS:
                cell = run_cell(__file__, ["--contender", contender, "--scenario", scenario], 900)
                if cell is not None:
                    runs.setdefault(f"{contender}/{scenario}", []).append(cell)
    medians = {key: median_of(rs) for key, rs in runs.items()}
    print(render(medians, args.repeat))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "runs": runs, "medians": medians}, fh, indent=2)
    return 0


def render(medians: dict[str, dict[str, float]], repeat: int) -> str:
    def get(key: str, field: str, fmt: str = ".1f") -> str:
        value = medians.get(key, {}).get(field)
        return "-" if value is None else format(value, fmt)

    m = machine()
    lines = [
        f"Python {m['python']}, PySide6 {m['pyside6']}, {m['cpus']} CPUs; "
        f"medians of {repeat} fresh processes per cell",
        "",
        "| contender | first progress median µs | p90 µs "
        "| flood wall ms | GUI progress updates | flood worst timer gap ms |",
        "|---|---|---|---|---|---|",
    ]
    for c in CONTENDERS:
        lat, flood = f"{c}/latency", f"{c}/flood"
        lines.append(
            f"| {c} | {get(lat, 'median_us', '.0f')} | {get(lat, 'p90_us', '.0f')} | "
            f"{get(flood, 'wall_ms')} | {get(flood, 'gui_updates', '.0f')} | "
            f"{get(flood, 'worst_gap_ms')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
