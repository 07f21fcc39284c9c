"""Scale benchmark: per-task signals with lambdas connected, at 2 000 to 100 000 in flight.

Run (each cell in its own fresh process)::

    python benchmarks/bench_signals.py                 # every cell, a Markdown table
    python benchmarks/bench_signals.py --sizes 2000 20000 --repeat 3

Every contender submits N trivial tasks in one go (all N in flight, their Python
callables connected), on 2 worker threads, then runs the event loop until the N-th
``finished`` (or result) has arrived on the GUI thread.  The figure is the wall time from
the first submit to the last delivery divided by N: the GUI thread's cost per task,
since the workers have nothing to do.

Contenders:
    then        ``manager.submit(f, i).then(callback)``
    signals1    ``handle.signals.result.connect(lambda ...)``
    signals7    a lambda on each of the 7 signals of ``handle.signals``
    worker7     a ``Worker`` subclass, a lambda on each of its 7 signals, ``manager.start``
    tutorial1   the tutorial pattern: ``QRunnable`` + its own ``WorkerSignals`` QObject,
                emitted from the pool thread, 1 lambda (on ``result``)
    tutorial7   the same with a lambda on each of its 7 signals

The tutorial's signals objects are kept alive by the GUI thread until every result has
arrived, then dropped there (``teardown_us_per_task``, reported apart): left to die with
their runnables on the pool threads, as the tutorial has it, they crash PySide6 6.12 with
lambdas connected (a segmentation fault within 2 000 tasks here).

Why it matters: PySide makes dropping a QObject whose signals are connected to Python
callables cost O(connections alive in the process) (see ``casare_workers._signals``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import machine, median_of, run_cell
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

SIZES = (2_000, 20_000, 100_000)
THREADS = 2


def trivial(i: int) -> int:
    return i


class TutorialSignals(QObject):
    started = Signal()
    progress = Signal("qint64", "qint64")  # type: ignore[arg-type]
    status = Signal(str)
    result = Signal(object)
    error = Signal(object)
    cancelled = Signal()
    finished = Signal()


class TutorialWorker(QRunnable):
    """The pattern of the PySide tutorials: the runnable owns its signals QObject."""

    def __init__(self, arg: int) -> None:
        super().__init__()
        self.arg = arg
        self.signals = TutorialSignals()

    def run(self) -> None:
        self.signals.started.emit()
        self.signals.result.emit(trivial(self.arg))
        self.signals.finished.emit()


def _connect(signals: Any, lambdas: int, count: Callable[[], None]) -> None:
    """Connect ``lambdas`` Python lambdas; the one that counts is on the last signal."""
    if lambdas == 1:
        signals.result.connect(lambda _v: count())
        return
    signals.started.connect(lambda: None)
    signals.progress.connect(lambda _c, _t: None)
    signals.status.connect(lambda _s: None)
    signals.result.connect(lambda _v: None)
    signals.error.connect(lambda _e: None)
    signals.cancelled.connect(lambda: None)
    signals.finished.connect(lambda: count())


def run_one(contender: str, n: int) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from casare_workers import Worker, WorkerManager

    class Square(Worker[int]):
        def __init__(self, arg: int) -> None:
            super().__init__()
            self.arg = arg

        def work(self) -> int:
            return trivial(self.arg)

    done = [0]

    def count() -> None:
        done[0] += 1

    manager = WorkerManager(pools={"io": THREADS})
    pool = QThreadPool()
    pool.setMaxThreadCount(THREADS)
    keep: list[TutorialSignals] = []
    began = time.perf_counter()
    for i in range(n):
        if contender == "then":
            manager.submit(trivial, i).then(lambda _v: count())
        elif contender in ("signals1", "signals7"):
            _connect(manager.submit(trivial, i).signals, int(contender[-1]), count)
        elif contender == "worker7":
            worker = Square(i)
            _connect(worker.signals, 7, count)
            manager.start(worker)
        else:
            runnable = TutorialWorker(i)
            _connect(runnable.signals, int(contender[-1]), count)
            keep.append(runnable.signals)  # see the module docstring
            pool.start(runnable)
    submitted = time.perf_counter()
    while done[0] < n:
        app.processEvents()
    ended = time.perf_counter()
    pool.waitForDone(60_000)
    keep.clear()
    torn_down = time.perf_counter()
    manager.shutdown(5)
    return {
        "us_per_task": 1e6 * (ended - began) / n,
        "submit_us_per_task": 1e6 * (submitted - began) / n,
        "teardown_us_per_task": 1e6 * (torn_down - ended) / n,
    }


CONTENDERS = ("then", "signals1", "signals7", "worker7", "tutorial1", "tutorial7")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--n", type=int)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median kept)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    if args.contender and args.n:
        print(json.dumps(run_one(args.contender, args.n)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for n in args.sizes:
            for contender in args.only:
                cell = run_cell(__file__, ["--contender", contender, "--n", str(n)], 1800)
                if cell is not None:
                    runs.setdefault(f"{contender}/{n}", []).append(cell)
                    print(f"{contender} n={n}: {cell}", file=sys.stderr, flush=True)
    results = {key: median_of(values) for key, values in runs.items()}
    print(render(results, args.sizes, args.only, args.repeat))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "results": results, "runs": runs}, fh, indent=2)
    return 0


def render(
    results: dict[str, dict[str, Any]], sizes: list[int], only: list[str], repeat: int
) -> str:
    m = machine()
    head = " | ".join(f"{n:,} in flight".replace(",", " ") for n in sizes)
    lines = [
        f"Python {m['python']}, PySide6 {m['pyside6']}, {m['cpus']} CPUs; {THREADS} worker "
        f"threads; µs per task (GUI thread, first submit to last delivery); "
        f"median of {repeat} run(s) per cell",
        "",
        f"| contender | {head} |",
        "|---|" + "---|" * len(sizes),
    ]
    for contender in only:
        cells = []
        for n in sizes:
            figures = results.get(f"{contender}/{n}")
            if figures is None:
                cells.append("-")
                continue
            cell = f"{figures['us_per_task']:.1f}"
            if contender.startswith("tutorial"):
                cell += f" (+{figures['teardown_us_per_task']:.0f} teardown)"
            cells.append(cell)
        lines.append(f"| {contender} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
