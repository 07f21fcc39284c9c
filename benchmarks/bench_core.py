"""Core benchmark: casare_workers against the patterns users would write instead.

Run (each contender and scenario in its own fresh process, same machine, same run)::

    python benchmarks/bench_core.py            # all contenders, prints a Markdown table
    python benchmarks/bench_core.py --json out.json

Contenders:
    a   the tutorial pattern: a QRunnable with its own WorkerSignals per task
    b   concurrent.futures.ThreadPoolExecutor + one bridge QObject
    c1  casare_workers submit, a slot connected to each handle's signals.result
    c2  casare_workers submit with a continuation (handle.then)
    d   casare_workers map (throughput only)

Scenarios:
    throughput  20 000 trivial tasks, each result delivered to the GUI thread.  Tasks are
                submitted in slices of 200 per event-loop turn (the same for everyone), so
                the timer can show what submitting costs the GUI.
    roundtrip   1 000 sequential round trips (submit, result on the GUI thread, next).
    progress    one task reporting progress 200 000 times, against the bare loop.

A 1 ms ``QTimer`` runs during every scenario; its worst gap is the GUI's worst stall.
Thread pools have 8 threads everywhere (the io pool's size on a 2-core machine).
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
from PySide6.QtCore import (
    QCoreApplication,
    QObject,
    QRunnable,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)

N_TASKS = 20_000
SLICE = 200
N_ROUNDTRIPS = 1_000
N_PROGRESS = 200_000
THREADS = 8


def trivial(i: int) -> int:
    return i


class Receiver(QObject):
    """Lives on the GUI thread; counts results."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.progress_updates = 0
        self.on_done: Callable[[], None] = lambda: None

    @Slot(object)
    def on_result(self, value: object) -> None:
        self.count += 1
        self.on_done()

    @Slot(int)
    def on_progress(self, value: int) -> None:
        self.progress_updates += 1

    @Slot("qint64", "qint64")
    def on_progress2(self, current: int, total: int) -> None:
        self.progress_updates += 1


# -- contenders: each exposes submit(fn, arg) and a progress-flood task ------------------


class TutorialSignals(QObject):
    finished = Signal()
    error = Signal(tuple)
    result = Signal(object)
    progress = Signal(int)


class TutorialWorker(QRunnable):
    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.signals = TutorialSignals()

    def run(self) -> None:
        try:
            result = self.fn(*self.args)
        except Exception as exc:
            self.signals.error.emit((type(exc), exc))
        else:
            self.signals.result.emit(result)
        finally:
            self.signals.finished.emit()


class Bridge(QObject):
    result = Signal(object)
    progress = Signal(int)


class Contender:
    name = "?"

    def __init__(self, receiver: Receiver, threads: int = THREADS) -> None:
        self.receiver = receiver
        self.threads = threads

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        raise NotImplementedError

    def submit_many(self, fn: Callable[[int], int], args: range) -> None:
        for arg in args:
            self.submit(fn, arg)

    def start_flood(self, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Tutorial(Contender):
    name = "a"

    def __init__(self, receiver: Receiver, threads: int = THREADS) -> None:
        super().__init__(receiver, threads)
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(threads)

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        worker = TutorialWorker(fn, arg)
        worker.signals.result.connect(self.receiver.on_result)
        self.pool.start(worker)

    def start_flood(self, n: int) -> None:
        def flood(progress: Any) -> int:
            for i in range(n):
                progress.emit(i)
            return n

        worker = TutorialWorker(lambda: flood(worker.signals.progress))
        worker.signals.progress.connect(self.receiver.on_progress)
        worker.signals.result.connect(self.receiver.on_result)
        self.pool.start(worker)

    def close(self) -> None:
        self.pool.waitForDone()


class Executor(Contender):
    name = "b"

    def __init__(self, receiver: Receiver, threads: int = THREADS) -> None:
        super().__init__(receiver, threads)
        self.executor = concurrent.futures.ThreadPoolExecutor(threads)
        self.bridge = Bridge()
        self.bridge.result.connect(receiver.on_result)
        self.bridge.progress.connect(receiver.on_progress)

    def _done(self, future: concurrent.futures.Future[int]) -> None:
        self.bridge.result.emit(future.result())

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        self.executor.submit(fn, arg).add_done_callback(self._done)

    def start_flood(self, n: int) -> None:
        emit = self.bridge.progress.emit

        def flood() -> int:
            for i in range(n):
                emit(i)
            return n

        self.executor.submit(flood).add_done_callback(self._done)

    def close(self) -> None:
        self.executor.shutdown()


class CasareSignals(Contender):
    name = "c1"

    def __init__(self, receiver: Receiver, threads: int = THREADS) -> None:
        super().__init__(receiver, threads)
        from casare_workers import WorkerManager

        self.manager = WorkerManager(pools={"io": threads})

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        self.manager.submit(fn, arg).signals.result.connect(self.receiver.on_result)

    def start_flood(self, n: int) -> None:
        from casare_workers import TaskContext

        def flood(ctx: TaskContext) -> int:
            progress = ctx.progress
            for i in range(n):
                progress(i + 1, n)
            return n

        handle = self.manager.submit(flood)
        handle.signals.progress.connect(self.receiver.on_progress2)
        handle.signals.result.connect(self.receiver.on_result)

    def close(self) -> None:
        self.manager.shutdown()


class CasareThen(CasareSignals):
    name = "c2"

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        self.manager.submit(fn, arg).then(self.receiver.on_result)


class CasareMap(CasareSignals):
    name = "d"

    def submit_many(self, fn: Callable[[int], int], args: range) -> None:
        receiver = self.receiver

        def delivered(results: list[int]) -> None:
            receiver.count += len(results) - 1
            receiver.on_result(results)

        self.manager.map(fn, args).then(delivered)


CONTENDERS: dict[str, type[Contender]] = {
    c.name: c for c in (Tutorial, Executor, CasareSignals, CasareThen, CasareMap)
}


# -- scenarios ------------------------------------------------------------------------------


def run_until(app: QCoreApplication, done: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("scenario did not finish")
        app.processEvents()


def scenario_throughput(app: QCoreApplication, contender: Contender) -> dict[str, float]:
    receiver = contender.receiver
    meter = GapMeter()
    submit_time = 0.0
    next_index = 0
    state = {"submitted": False}

    def submit_slice() -> None:
        nonlocal submit_time, next_index
        began = time.perf_counter()
        if contender.name == "d":
            contender.submit_many(trivial, range(N_TASKS))
            next_index = N_TASKS
        else:
            end = min(N_TASKS, next_index + SLICE)
            for i in range(next_index, end):
                contender.submit(trivial, i)
            next_index = end
        submit_time += time.perf_counter() - began
        if next_index < N_TASKS:
            QTimer.singleShot(0, submit_slice)
        else:
            state["submitted"] = True

    meter.start()
    began = time.perf_counter()
    QTimer.singleShot(0, submit_slice)
    run_until(app, lambda: receiver.count >= N_TASKS)
    total = time.perf_counter() - began
    gap = meter.stop()
    return {
        "us_per_task": total / N_TASKS * 1e6,
        "gui_submit_ms": submit_time * 1e3,
        "worst_gap_ms": gap * 1e3,
    }


def scenario_roundtrip(app: QCoreApplication, contender: Contender) -> dict[str, float]:
    receiver = contender.receiver
    samples: list[float] = []
    meter = GapMeter()
    sent = [0.0]

    def fire() -> None:
        sent[0] = time.perf_counter()
        contender.submit(trivial, len(samples))

    def arrived() -> None:
        samples.append(time.perf_counter() - sent[0])
        if len(samples) < N_ROUNDTRIPS:
            fire()

    receiver.on_done = arrived
    meter.start()
    fire()
    run_until(app, lambda: len(samples) >= N_ROUNDTRIPS)
    gap = meter.stop()
    return {"median_us": statistics.median(samples) * 1e6, "worst_gap_ms": gap * 1e3}


def bare_loop(n: int) -> float:
    def noop(*args: object) -> None:
        return None

    result: list[float] = []

    def run() -> None:
        began = time.perf_counter()
        for i in range(n):
            noop(i + 1, n)
        result.append(time.perf_counter() - began)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def scenario_progress(app: QCoreApplication, contender: Contender) -> dict[str, float]:
    receiver = contender.receiver
    meter = GapMeter()
    bare = min(bare_loop(N_PROGRESS) for _ in range(3))
    meter.start()
    began = time.perf_counter()
    contender.start_flood(N_PROGRESS)
    run_until(app, lambda: receiver.count >= 1)
    # The tutorial/executor patterns keep delivering queued progress after the result.
    app.processEvents()
    total = time.perf_counter() - began
    gap = meter.stop()
    return {
        "wall_ms": total * 1e3,
        "bare_ms": bare * 1e3,
        "ratio_vs_bare": total / bare,
        "gui_updates": receiver.progress_updates,
        "worst_gap_ms": gap * 1e3,
    }


SCENARIOS = {
    "throughput": scenario_throughput,
    "roundtrip": scenario_roundtrip,
    "progress": scenario_progress,
}


def run_one(contender_name: str, scenario: str) -> dict[str, Any]:
    app = QCoreApplication.instance() or QCoreApplication([])
    receiver = Receiver()
    contender = CONTENDERS[contender_name](receiver)
    # Warm up threads and code paths (not measured).
    for i in range(50):
        contender.submit(trivial, i)
    run_until(app, lambda: receiver.count >= 50)
    receiver.count = 0
    result = SCENARIOS[scenario](app, contender)
    contender.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", choices=sorted(CONTENDERS))
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median kept)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    if args.contender and args.scenario:
        print(json.dumps(run_one(args.contender, args.scenario)))
        return 0
    plan = [(c, s) for s in SCENARIOS for c in CONTENDERS if not (c == "d" and s != "throughput")]
    runs: dict[str, list[dict[str, Any]]] = {f"{c}/{s}": [] for c, s in plan}
    # Interleave the repetitions so that a noisy minute hurts every contender alike.
    for _ in range(args.repeat):
        for contender, scenario in plan:
            cell = run_cell(__file__, ["--contender", contender, "--scenario", scenario], 900)
            if cell is not None:
                runs[f"{contender}/{scenario}"].append(cell)
    results = {key: median_of(values) for key, values in runs.items() if values}
    print(render(results, args.repeat))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "results": results, "runs": runs}, fh, indent=2)
    return 0


def render(results: dict[str, dict[str, Any]], repeat: int) -> str:
    def get(key: str, field: str) -> str:
        value = results.get(key, {}).get(field)
        return (
            "-" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))
        )

    m = machine()
    lines = [
        f"Python {m['python']}, PySide6 {m['pyside6']}, {m['cpus']} CPUs, {m['platform']}; "
        f"median of {repeat} runs per cell",
        "",
        "| contender | throughput µs/task | GUI ms submitting | worst gap ms "
        "| round trip median µs | worst gap ms "
        "| progress wall ms (bare) | x bare | GUI updates | worst gap ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in CONTENDERS:
        t, r, p = f"{c}/throughput", f"{c}/roundtrip", f"{c}/progress"
        lines.append(
            f"| {c} | {get(t, 'us_per_task')} | {get(t, 'gui_submit_ms')} | "
            f"{get(t, 'worst_gap_ms')} | {get(r, 'median_us')} | {get(r, 'worst_gap_ms')} | "
            f"{get(p, 'wall_ms')} ({get(p, 'bare_ms')}) | {get(p, 'ratio_vs_bare')} | "
            f"{get(p, 'gui_updates')} | {get(p, 'worst_gap_ms')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
