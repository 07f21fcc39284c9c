"""The per-task hot path (issue 14): casare_workers against a hand-written executor bridge.

Run (every cell in its own fresh process; a Markdown report on stdout)::

    python benchmarks/bench_hotpath.py                          # everything, 3 runs a cell
    python benchmarks/bench_hotpath.py --sizes 2000,20000 --repeat 1        # a quick look
    python benchmarks/bench_hotpath.py --baseline main          # old (main) next to new
    python benchmarks/bench_hotpath.py --only throughput,then,bridge --json raw.json
    python benchmarks/bench_hotpath.py --profile submit_idle/then/20000
    ./dev -s bench -- --hotpath --baseline main                 # the same through nox

The ``casare_workers`` measured is always the one of this checkout (its root is put first
on the cells' ``PYTHONPATH`` and each cell checks where it imported the package from).
``--baseline REV`` checks REV out into a temporary ``git worktree`` and runs every
casare_workers cell a second time against it: the report shows ``@old`` rows next to
the new ones.  ``--profile KEY`` runs one cell in this process under cProfile and prints
the top functions: for ``throughput`` and ``submit_idle`` only the one submit call
(``--profile submit_idle/then/20000``: the GUI thread's submit cost, workers parked).

Every process is a GUI application: an offscreen ``QApplication`` whose thread blocks
in ``exec()`` when idle, with every result delivered to a Python callable on that thread
(a counting receiver).  Every contender gets the same 2 worker threads.

Contenders:
    bridge   ``ThreadPoolExecutor(2)`` + one bridge QObject with a Signal, emitted from each
             future's done callback (``bench_core.Executor``)
    then     ``WorkerManager(pools={"io": 2})``: ``manager.submit(fn, i).then(cb)``
    worker   ``w = Worker(fn, i); w.handle.then(cb); manager.start(w)``
    map      ``manager.map(fn, items).then(cb)`` (one handle; the figures are per item)
    deque    floor: a minimal ideal executor, a ``deque.append``/``popleft`` hand-off to 2
             threads (a wake-up only for a sleeping thread) and back, with one posted Qt
             event per batch of results
    bare     floor: the same calls in a bare loop on one thread (a small slotted object per
             task, the function, the callback); no threads, no Qt

Scenarios (``--only`` takes these names, contender names, or ``scenario/contender``):
    throughput   N tasks (``--sizes``, default 2 000, 20 000, 100 000) submitted from the
                 GUI thread in ONE call while the workers run: µs per task from the first
                 submit to the last delivery, GUI-thread µs per submit call, and the worst
                 gap of a 1 ms precise timer
    submit_idle  the same N with both workers parked on a gate first: GUI-thread µs per
                 submit call with nobody competing for the GIL, then µs per task to drain
                 once the gate opens
    roundtrip    1 000 sequential round trips (submit, result on the GUI thread, next):
                 median µs
    progress     one task calling ``ctx.progress`` 200 000 times (the bridge: one signal
                 emit per update): wall time until the result, GUI updates, worst gap;
                 against a bare loop of the same calls on a thread
    import       ``import casare_workers`` against ``import PySide6.QtCore`` alone, each in
                 fresh interpreters (median of ``--import-runs``); plus the heaviest
                 submodules from one ``-X importtime`` run

Targets (from issue 14; each reported met / not met with its ratio):
    * then() ≥ 3x faster per task than the bridge at 2 000 and at 20 000;
    * then() flat within 1.5x from 2 000 to 100 000 tasks;
    * GUI-thread submit ≤ 3 µs at 20 000 in flight, for then() and for Worker via
      ``manager.start`` (judged on the ``throughput`` figure, workers running; the
      parked figure is reported beside it);
    * round trip no slower than the bridge;
    * ``import casare_workers`` ≤ 1.3x ``import PySide6.QtCore``;
    * with ``--baseline``: progress flood and map no worse than the baseline (10 % noise
      allowance).

Read the figures as ratios: the machine they run on is usually shared and noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import shlex
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Reused, not copied: the counting receiver, the executor bridge and the casare_workers
# contenders come from the core benchmark (which lives beside this file).
import bench_core
from _common import (
    ROOT,
    GapMeter,
    baseline_checkout,
    git_revision,
    load_average,
    machine,
    median_of,
    package_dirty,
    python_path,
    run_cell,
)
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

THREADS = 2
SIZES = (2_000, 20_000, 100_000)
N_ROUNDTRIPS = 1_000
N_PROGRESS = 200_000
N_WARMUP = 50
IMPORT_RUNS = 7
#: Seconds without a single delivery after which a cell gives up (lost results).
STALL_S = 30.0
CELL_TIMEOUT_S = 900.0
BASELINE_SUFFIX = "@old"

SCENARIOS = ("throughput", "submit_idle", "roundtrip", "progress", "import")
#: Which contenders run which scenario (floors included).
PLAN: dict[str, tuple[str, ...]] = {
    "throughput": ("bridge", "then", "worker", "map", "deque", "bare"),
    "submit_idle": ("bridge", "then", "worker", "map", "deque"),
    "roundtrip": ("bridge", "then", "worker", "deque"),
    "progress": ("bridge", "then", "worker"),
    "import": ("qtcore", "casare"),
}
CONTENDERS = tuple(dict.fromkeys(c for row in PLAN.values() for c in row))
#: The contenders that import casare_workers: they also run against ``--baseline``.
CASARE = frozenset({"then", "worker", "map", "casare"})
SIZED = frozenset({"throughput", "submit_idle"})


def trivial(i: int) -> int:
    return i


# -- the contenders: bench_core's, with 2 threads and a gate to park the workers on ---------


class HotPath(Protocol):
    """What a cell needs of a contender (bench_core's interface, plus ``park``)."""

    receiver: bench_core.Receiver
    threads: int

    def submit(self, fn: Callable[[int], int], arg: int) -> None: ...

    def submit_many(self, fn: Callable[[int], int], args: range) -> None: ...

    def park(self, gate: Callable[[], object]) -> None:
        """Run ``gate`` on a worker thread, its result delivered to nobody."""

    def start_flood(self, n: int) -> None: ...

    def close(self) -> None: ...


class Bridge(bench_core.Executor):
    name = "bridge"

    def park(self, gate: Callable[[], object]) -> None:
        self.executor.submit(gate)


class Then(bench_core.CasareThen):
    name = "then"

    def park(self, gate: Callable[[], object]) -> None:
        self.manager.submit(gate)


class CasareWorker(bench_core.CasareSignals):
    name = "worker"

    def __init__(self, receiver: bench_core.Receiver, threads: int = THREADS) -> None:
        super().__init__(receiver, threads)
        from casare_workers import Worker

        self.worker_type = Worker

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        worker = self.worker_type(fn, arg)
        worker.handle.then(self.receiver.on_result)
        self.manager.start(worker)

    def park(self, gate: Callable[[], object]) -> None:
        self.manager.start(self.worker_type(gate))

    def start_flood(self, n: int) -> None:
        from casare_workers import TaskContext

        def flood(ctx: TaskContext) -> int:
            progress = ctx.progress
            for i in range(n):
                progress(i + 1, n)
            return n

        worker = self.worker_type(flood)
        worker.signals.progress.connect(self.receiver.on_progress2)
        worker.handle.then(self.receiver.on_result)
        self.manager.start(worker)


class Map(bench_core.CasareMap):
    name = "map"

    def park(self, gate: Callable[[], object]) -> None:
        self.manager.submit(gate)


class _Call:
    """One task of the floors: what any executor must hold per task, and no more."""

    __slots__ = ("arg", "callback", "fn", "result")

    def __init__(self, fn: Callable[[Any], Any], arg: Any, callback: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.arg = arg
        self.callback = callback
        self.result: Any = None


_DRAIN = QEvent.Type(QEvent.registerEventType())


class _DrainSink(QObject):
    """Lives on the GUI thread; a posted ``_DRAIN`` event runs the floor's drain there."""

    def __init__(self, drain: Callable[[], None]) -> None:
        super().__init__()
        self._drain = drain

    def event(self, event: QEvent) -> bool:
        if event.type() == _DRAIN:
            self._drain()
            return True
        return super().event(event)


class DequeFloor(bench_core.Contender):
    """The minimal ideal executor: deques both ways, one posted event per batch.

    A submit is an append (plus a notify only when a thread sleeps); a thread pops,
    runs, appends the call to the done deque and posts one event unless one is already
    on its way; the GUI thread drains every finished call per event.  No cancellation,
    no state, no bookkeeping: nothing a real executor could do with less.
    """

    name = "deque"

    def __init__(self, receiver: bench_core.Receiver, threads: int = THREADS) -> None:
        super().__init__(receiver, threads)
        self._tasks: deque[_Call] = deque()
        self._done: deque[_Call] = deque()
        self._wake = threading.Condition()
        self._sleeping = 0
        self._posted = False
        self._closed = False
        self._sink = _DrainSink(self._drain)
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[int], int], arg: int) -> None:
        self._push(_Call(fn, arg, self.receiver.on_result))

    def park(self, gate: Callable[[], object]) -> None:
        self._push(_Call(lambda _: gate(), None, lambda _: None))

    def _push(self, call: _Call) -> None:
        self._tasks.append(call)
        # Read without the lock: a thread counts itself as sleeping *before* it looks
        # at the deque (under the lock), so either it sees this task or we see it.
        if self._sleeping:
            with self._wake:
                self._wake.notify()

    def _work(self) -> None:  # Runs on a worker thread.
        tasks, done = self._tasks, self._done
        while True:
            try:
                call = tasks.popleft()
            except IndexError:
                with self._wake:
                    self._sleeping += 1
                    if not tasks and not self._closed:
                        self._wake.wait()
                    self._sleeping -= 1
                    if self._closed:
                        return
                continue
            call.result = call.fn(call.arg)
            done.append(call)
            if not self._posted:
                self._posted = True
                QCoreApplication.postEvent(self._sink, QEvent(_DRAIN))

    def _drain(self) -> None:  # Runs on the GUI thread.
        # Reset before draining: a result appended after this line posts a new event.
        self._posted = False
        done = self._done
        while done:
            call = done.popleft()
            call.callback(call.result)

    def start_flood(self, n: int) -> None:
        raise NotImplementedError("the deque floor has no progress channel")

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)


def bare_run(receiver: bench_core.Receiver, n: int) -> float:
    """The bare floor: per task a slotted object, the function, the callback; seconds."""
    callback = receiver.on_result
    began = time.perf_counter()
    for i in range(n):
        call = _Call(trivial, i, callback)
        call.result = call.fn(call.arg)
        call.callback(call.result)
    return time.perf_counter() - began


CONTENDER_TYPES: dict[str, Callable[[bench_core.Receiver, int], HotPath]] = {
    "bridge": Bridge,
    "then": Then,
    "worker": CasareWorker,
    "map": Map,
    "deque": DequeFloor,
}


# -- one cell, in this (fresh) process -------------------------------------------------------


class LostResultsError(RuntimeError):
    """A cell saw no delivery for ``STALL_S`` seconds."""


class Loop:
    """Runs the application's event loop until :meth:`finish` (or a stall)."""

    def __init__(self, app: QCoreApplication, receiver: bench_core.Receiver) -> None:
        self.app = app
        self.receiver = receiver
        self.finished_at = 0.0
        self.failure: BaseException | None = None

    def run(self, start: Callable[[], None], expected: int) -> None:
        """Call ``start`` from the running loop; return once :meth:`finish` was called."""
        seen = [self.receiver.count, time.monotonic()]

        def guarded_start() -> None:
            try:
                start()
            except BaseException as exc:
                self.failure = exc
                self.app.quit()

        def watch() -> None:
            count = self.receiver.count
            if count != seen[0]:
                seen[:] = [count, time.monotonic()]
            elif time.monotonic() - seen[1] > STALL_S:
                self.failure = LostResultsError(
                    f"{count} of {expected} results, none for {STALL_S:.0f} s"
                )
                self.app.quit()

        watchdog = QTimer()
        watchdog.setInterval(1000)
        watchdog.timeout.connect(watch)
        watchdog.start()
        self.finished_at = 0.0
        QTimer.singleShot(0, guarded_start)
        self.app.exec()
        watchdog.stop()
        if self.failure is not None:
            raise self.failure
        if not self.finished_at:
            raise RuntimeError("the event loop quit before the cell finished")

    def finish(self) -> None:
        """The cell is done (GUI thread): note the time, leave the loop."""
        if not self.finished_at:  # a late result must not move the end
            self.finished_at = time.perf_counter()
        self.app.quit()


def until(loop: Loop, target: int) -> Callable[[], None]:
    """A receiver hook that finishes ``loop`` at the ``target``-th result."""
    receiver = loop.receiver

    def check() -> None:
        if receiver.count >= target:
            loop.finish()

    return check


class Gate:
    """Parks every worker thread: each runs :meth:`hold` and waits until :meth:`open`."""

    def __init__(self, threads: int) -> None:
        self._all_in = threading.Barrier(threads + 1, timeout=30)
        self._open = threading.Event()

    def hold(self) -> None:  # Runs on a worker thread.
        self._all_in.wait()
        if not self._open.wait(timeout=120):
            raise TimeoutError("the gate was never opened")

    def park(self, contender: HotPath) -> None:
        """Submit one :meth:`hold` per thread through ``contender``; wait for all of them."""
        for _ in range(contender.threads):
            contender.park(self.hold)
        self._all_in.wait()

    def open(self) -> None:
        self._open.set()


#: Set by ``--profile``: what :func:`submit_all` runs under.
PROFILER: cProfile.Profile | None = None


def submit_all(contender: HotPath, n: int) -> None:
    """Submit ``n`` trivial tasks in one call (GUI thread), under ``PROFILER`` if set."""
    if PROFILER is None:
        contender.submit_many(trivial, range(n))
        return
    PROFILER.enable()
    try:
        contender.submit_many(trivial, range(n))
    finally:
        PROFILER.disable()


def cell_throughput(loop: Loop, contender: HotPath, n: int) -> dict[str, float]:
    receiver = loop.receiver
    receiver.on_done = until(loop, n)
    meter = GapMeter()
    span: dict[str, float] = {}

    def start() -> None:
        span["began"] = time.perf_counter()
        submit_all(contender, n)
        span["submitted"] = time.perf_counter()

    meter.start()
    loop.run(start, n)
    gap = meter.stop()
    return {
        "us_per_task": (loop.finished_at - span["began"]) / n * 1e6,
        "gui_submit_us": (span["submitted"] - span["began"]) / n * 1e6,
        "worst_gap_ms": gap * 1e3,
    }


def cell_submit_idle(loop: Loop, contender: HotPath, n: int) -> dict[str, float]:
    receiver = loop.receiver
    receiver.on_done = until(loop, n)
    gate = Gate(contender.threads)
    span: dict[str, float] = {}

    def start() -> None:
        gate.park(contender)
        span["began"] = time.perf_counter()
        submit_all(contender, n)
        span["submitted"] = time.perf_counter()
        gate.open()

    loop.run(start, n)
    return {
        "gui_submit_us": (span["submitted"] - span["began"]) / n * 1e6,
        "drain_us_per_task": (loop.finished_at - span["submitted"]) / n * 1e6,
    }


def cell_roundtrip(loop: Loop, contender: HotPath, n: int) -> dict[str, float]:
    receiver = loop.receiver
    samples: list[float] = []
    sent = [0.0]

    def fire() -> None:
        sent[0] = time.perf_counter()
        contender.submit(trivial, len(samples))

    def arrived() -> None:
        samples.append(time.perf_counter() - sent[0])
        if len(samples) < n:
            fire()
        else:
            loop.finish()

    receiver.on_done = arrived
    meter = GapMeter()
    meter.start()
    loop.run(fire, n)
    gap = meter.stop()
    return {"median_us": statistics.median(samples) * 1e6, "worst_gap_ms": gap * 1e3}


def cell_progress(loop: Loop, contender: HotPath, n: int) -> dict[str, float]:
    receiver = loop.receiver
    receiver.on_done = until(loop, 1)
    bare = min(bench_core.bare_loop(n) for _ in range(3))
    meter = GapMeter()
    span: dict[str, float] = {}

    def start() -> None:
        span["began"] = time.perf_counter()
        contender.start_flood(n)

    meter.start()
    loop.run(start, 1)
    gap = meter.stop()
    wall = loop.finished_at - span["began"]
    return {
        "wall_ms": wall * 1e3,
        "bare_ms": bare * 1e3,
        "x_bare": wall / bare,
        "gui_updates": float(receiver.progress_updates),
        "worst_gap_ms": gap * 1e3,
    }


CELLS: dict[str, Callable[[Loop, HotPath, int], dict[str, float]]] = {
    "throughput": cell_throughput,
    "submit_idle": cell_submit_idle,
    "roundtrip": cell_roundtrip,
    "progress": cell_progress,
}


def check_casare_root(expected: Path) -> None:
    """Fail unless ``casare_workers`` was imported from ``expected`` (old/new mix-ups)."""
    import casare_workers

    found = Path(casare_workers.__file__ or "").resolve()
    if not found.is_relative_to(expected.resolve()):
        raise RuntimeError(f"casare_workers imported from {found}, expected under {expected}")


def measure(scenario: str, contender_name: str, n: int) -> dict[str, float]:
    """Run one cell in this process: warm up, then the scenario; its figures."""
    receiver = bench_core.Receiver()
    if contender_name == "bare":
        bare_run(receiver, N_WARMUP)
        gc.collect()
        return {"us_per_task": bare_run(receiver, n) / n * 1e6}
    app = QApplication.instance() or QApplication([])
    loop = Loop(app, receiver)
    contender = CONTENDER_TYPES[contender_name](receiver, THREADS)
    try:
        # Warm the threads and the code paths up (not measured).
        receiver.on_done = until(loop, N_WARMUP)
        loop.run(lambda: contender.submit_many(trivial, range(N_WARMUP)), N_WARMUP)
        receiver.count = 0
        gc.collect()
        return CELLS[scenario](loop, contender, n)
    finally:
        contender.close()


# -- import time -------------------------------------------------------------------------------

IMPORT_PROBE = """\
import json, sys, time
name = sys.argv[1]
began = time.perf_counter()
__import__(name)
elapsed = time.perf_counter() - began
print(json.dumps({"seconds": elapsed, "file": sys.modules[name].__file__}))
"""

IMPORT_MODULES = {"qtcore": "PySide6.QtCore", "casare": "casare_workers"}


def import_seconds(module: str, env: dict[str, str], expect_root: Path | None) -> float:
    """Seconds ``import module`` takes in a fresh interpreter."""
    # -P: no current directory on sys.path, which would shadow PYTHONPATH's checkout.
    out = subprocess.run(
        [sys.executable, "-P", "-c", IMPORT_PROBE, module],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    if expect_root is not None and not Path(probe["file"]).resolve().is_relative_to(expect_root):
        raise RuntimeError(f"{module} imported from {probe['file']}, expected under {expect_root}")
    return float(probe["seconds"])


def import_breakdown(env: dict[str, str]) -> dict[str, float]:
    """Cumulative ms of ``casare_workers`` and of each submodule it imports directly.

    From one ``-X importtime`` run.  Cumulative: the first submodule to import a
    dependency (PySide6, asyncio) carries its cost.
    """
    out = subprocess.run(
        [sys.executable, "-P", "-X", "importtime", "-c", "import casare_workers"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    rows: list[tuple[int, str, float]] = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        try:
            cumulative = int(parts[1])
        except ValueError:  # the header line
            continue
        name = parts[2].rstrip()
        rows.append((len(name) - len(name.lstrip()), name.strip(), cumulative / 1e3))
    top = [row for row in rows if row[1] == "casare_workers"]
    if not top:
        return {}
    depth = top[-1][0]
    figures = {"casare_workers": top[-1][2]}
    for indent, name, ms in rows:
        if indent == depth + 2 and name.startswith("casare_workers."):
            figures[name] = ms
    return figures


# -- the orchestrator --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One (scenario, contender, size) measured in its own process, new or old."""

    scenario: str
    contender: str
    n: int = 0
    old: bool = False

    @property
    def key(self) -> str:
        size = f"/{self.n}" if self.scenario in SIZED else ""
        return f"{self.scenario}/{self.contender}{size}{BASELINE_SUFFIX if self.old else ''}"


def parse_key(key: str, sizes: Sizes) -> Cell:
    """The cell a key names (``--profile``): ``scenario/contender[/n]``."""
    old = key.endswith(BASELINE_SUFFIX)
    parts = key.removesuffix(BASELINE_SUFFIX).split("/")
    if len(parts) not in (2, 3) or parts[0] not in PLAN or parts[1] not in PLAN[parts[0]]:
        raise SystemExit(f"unknown cell {key!r}: expected scenario/contender[/size]")
    scenario, contender = parts[0], parts[1]
    if scenario in SIZED:
        n = int(parts[2]) if len(parts) == 3 else sizes.sizes[0]
    else:
        n = sizes.count(scenario)
    return Cell(scenario, contender, n, old)


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (the test suite shrinks them)."""

    sizes: tuple[int, ...] = SIZES
    roundtrips: int = N_ROUNDTRIPS
    flood: int = N_PROGRESS

    def count(self, scenario: str) -> int:
        return {"roundtrip": self.roundtrips, "progress": self.flood}.get(scenario, 0)


def selected(cell: Cell, only: list[str]) -> bool:
    """``--only``: scenario names, contender names, or ``scenario/contender`` pairs."""
    if not only:
        return True
    if f"{cell.scenario}/{cell.contender}" in only:
        return True
    scenarios = [t for t in only if t in SCENARIOS]
    contenders = [t for t in only if t in CONTENDERS]
    if not scenarios and not contenders:
        return False
    return (not scenarios or cell.scenario in scenarios) and (
        not contenders or cell.contender in contenders
    )


def plan(sizes: Sizes, only: list[str], baseline: bool) -> list[Cell]:
    cells: list[Cell] = []
    for scenario, contenders in PLAN.items():
        for n in sizes.sizes if scenario in SIZED else (sizes.count(scenario),):
            for contender in contenders:
                for old in (False, True) if baseline and contender in CASARE else (False,):
                    cell = Cell(scenario, contender, n, old)
                    if selected(cell, only):
                        cells.append(cell)
    return cells


def cell_env(root: Path) -> dict[str, str]:
    """A child's environment: ``root``'s casare_workers first on the path, offscreen Qt.

    Bytecode may be written (``PYTHONDONTWRITEBYTECODE`` dropped): an installed package
    has its ``.pyc`` files, and the untimed first import of each import cell writes them.
    Without that every timed import would compile the sources again.
    """
    env = dict(os.environ, PYTHONPATH=python_path(root), QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_plan(
    cells: list[Cell], repeat: int, import_runs: int, roots: dict[bool, Path]
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[str]], dict[str, dict[str, float]]]:
    """Every cell ``repeat`` times, one fresh process each, the repetitions interleaved.

    Returns the figures of each run, the errors of the runs that failed, and the
    ``-X importtime`` breakdown of each casare_workers revision measured.
    """
    runs: dict[str, list[dict[str, float]]] = {cell.key: [] for cell in cells}
    errors: dict[str, list[str]] = {}
    breakdown: dict[str, dict[str, float]] = {}
    script = str(Path(__file__).resolve())
    for rep in range(repeat):
        for cell in cells:
            print(f"[{rep + 1}/{repeat}] {cell.key}", file=sys.stderr, flush=True)
            root = roots[cell.old]
            env = cell_env(root)
            failed: list[str] = []
            if cell.scenario == "import":
                module = IMPORT_MODULES[cell.contender]
                expect = root if cell.contender in CASARE else None
                try:
                    import_seconds(module, env, expect)  # untimed: writes the .pyc files
                    for _ in range(import_runs):
                        ms = import_seconds(module, env, expect) * 1e3
                        runs[cell.key].append({"ms": ms})
                    if cell.contender in CASARE and cell.key not in breakdown:
                        breakdown[cell.key] = import_breakdown(env)
                except (subprocess.SubprocessError, RuntimeError, ValueError) as exc:
                    detail = getattr(exc, "stderr", None) or str(exc)
                    failed.append(str(detail).strip().splitlines()[-1])
            else:
                args = ["--cell", cell.key, "--n", str(cell.n), "--casare-root", str(root)]
                figures = run_cell(script, args, CELL_TIMEOUT_S, env=env, errors=failed)
                if figures is not None:
                    runs[cell.key].append(figures)
            if failed:
                errors.setdefault(cell.key, []).extend(failed)
    return runs, errors, breakdown


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One target of issue 14, judged on one revision's figures."""

    text: str
    measured: str
    met: bool | None  # None: not measured


def _fig(results: dict[str, dict[str, float]], key: str, field: str) -> float | None:
    return results.get(key, {}).get(field)


def evaluate_targets(
    results: dict[str, dict[str, float]], sizes: Sizes, suffix: str = ""
) -> list[Target]:
    """Issue 14's targets on the figures of the cells whose keys end with ``suffix``.

    The bridge and the floors do not depend on the revision: their figures come from
    the unsuffixed cells whatever ``suffix`` is.
    """

    def fig(key: str, field: str) -> float | None:
        return _fig(results, key, field)

    targets: list[Target] = []
    for n in (2_000, 20_000):
        text = f"`then()` ≥ 3x faster per task than the bridge at {n:,}".replace(",", " ")
        bridge = fig(f"throughput/bridge/{n}", "us_per_task")
        then = fig(f"throughput/then/{n}{suffix}", "us_per_task")
        if bridge is None or then is None:
            targets.append(Target(text, "not measured", None))
        else:
            speedup = bridge / then
            measured = f"{speedup:.2f}x ({then:.1f} against {bridge:.1f} µs/task)"
            targets.append(Target(text, measured, speedup >= 3))

    text = "`then()` per-task cost flat within 1.5x from 2 000 to 100 000"
    measured_sizes = [n for n in sizes.sizes if fig(f"throughput/then/{n}{suffix}", "us_per_task")]
    if 2_000 in measured_sizes and len(measured_sizes) > 1:
        last = max(measured_sizes)
        first_us = fig(f"throughput/then/2000{suffix}", "us_per_task")
        last_us = fig(f"throughput/then/{last}{suffix}", "us_per_task")
        assert first_us is not None
        assert last_us is not None
        ratio = last_us / first_us
        if last == 100_000:
            targets.append(Target(text, f"{ratio:.2f}x", ratio <= 1.5))
        else:
            partial = f"{ratio:.2f}x from 2 000 to {last:,} (100 000 not run)".replace(",", " ")
            targets.append(Target(text, partial, None))
    else:
        targets.append(Target(text, "not measured", None))

    for contender, how in (("then", "`submit`"), ("worker", "`Worker` via `manager.start`")):
        for scenario, when in (("throughput", "workers running"), ("submit_idle", "parked")):
            text = f"GUI-thread cost of one {how} ≤ 3 µs at 20 000 in flight ({when})"
            us = fig(f"{scenario}/{contender}/20000{suffix}", "gui_submit_us")
            if us is None:
                targets.append(Target(text, "not measured", None))
            else:
                targets.append(Target(text, f"{us:.2f} µs ({us / 3:.2f}x the bound)", us <= 3))

    bridge_rt = fig("roundtrip/bridge", "median_us")
    for contender in ("then", "worker"):
        text = f"round trip of `{contender}` no slower than the bridge"
        rt = fig(f"roundtrip/{contender}{suffix}", "median_us")
        if bridge_rt is None or rt is None:
            targets.append(Target(text, "not measured", None))
        else:
            measured = f"{bridge_rt / rt:.2f}x ({rt:.1f} against {bridge_rt:.1f} µs)"
            targets.append(Target(text, measured, rt <= bridge_rt))

    text = "`import casare_workers` ≤ 1.3x `import PySide6.QtCore`"
    qtcore = fig("import/qtcore", "ms")
    casare = fig(f"import/casare{suffix}", "ms")
    if qtcore is None or casare is None:
        targets.append(Target(text, "not measured", None))
    else:
        ratio = casare / qtcore
        measured = f"{ratio:.2f}x ({casare:.0f} against {qtcore:.0f} ms)"
        targets.append(Target(text, measured, ratio <= 1.3))
    return targets


def evaluate_against_baseline(results: dict[str, dict[str, float]], sizes: Sizes) -> list[Target]:
    """ "No worse than today": the new figures over the baseline's (10 % noise allowance)."""
    checks = [("progress flood wall time (`then`)", "progress/then", "wall_ms")]
    checks += [
        (f"`map` µs per item at {n:,}".replace(",", " "), f"throughput/map/{n}", "us_per_task")
        for n in sizes.sizes
    ]
    targets = []
    for what, key, field in checks:
        text = f"{what} no worse than the baseline"
        new = _fig(results, key, field)
        old = _fig(results, key + BASELINE_SUFFIX, field)
        if new is None or old is None:
            targets.append(Target(text, "not measured", None))
        else:
            ratio = new / old
            targets.append(Target(text, f"{ratio:.2f}x the baseline", ratio <= 1.1))
    return targets


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, ref: float | None) -> str:
    return "-" if value is None or ref is None or ref == 0 else f"{value / ref:.2f}x"


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def _label(contender: str, old: bool, meta: dict[str, Any]) -> str:
    floor = {"deque": "deque (floor)", "bare": "bare loop (floor)"}.get(contender, contender)
    return f"{floor} @old ({meta['baseline']})" if old else floor


def _rows(contenders: Iterable[str], baseline: bool) -> Iterator[tuple[str, bool]]:
    for contender in contenders:
        if baseline and contender in CASARE:
            yield contender, True
        yield contender, False


def render_markdown(
    results: dict[str, dict[str, float]],
    errors: dict[str, list[str]],
    breakdown: dict[str, dict[str, float]],
    meta: dict[str, Any],
    sizes: Sizes,
) -> str:
    """The report: one table per scenario, then the targets."""
    baseline = bool(meta.get("baseline"))
    m = meta["machine"]
    new = f"new = this checkout ({meta['revision']})"
    lines = [
        "## Hot path: casare_workers against a hand-written executor bridge",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Python {m['python']}, PySide6 {m['pyside6']}, {m['cpus']} CPUs, {m['platform']}; "
        f"load average (1/5/15 min) {meta['load_before']} before, {meta['load_after']} after; "
        f"median of {meta['repeat']} process(es) per cell; {THREADS} worker threads for "
        f"every contender.  {new}"
        + (f"; old = `{meta['baseline_rev']}` ({meta['baseline']})." if baseline else "."),
        "",
    ]

    def suffix(old: bool) -> str:
        return BASELINE_SUFFIX if old else ""

    def in_plan(key: str) -> bool:
        return key in results or key in errors

    if any(k.startswith(("throughput/", "submit_idle/")) for k in [*results, *errors]):
        lines += [
            "### Throughput: N tasks submitted from the GUI thread in one call",
            "",
            "µs/task from the first submit to the last delivery, workers running; "
            "*speed-up* = the bridge's µs/task over this row's; *x floor* = this row's "
            "µs/task over the floor's; GUI submit = GUI-thread µs per submit call (per "
            "item for `map`), with the workers running and parked on a gate; drain = "
            "µs/task once the gate opens.",
            "",
            "| contender | N | µs/task | speed-up vs bridge | x deque floor | x bare floor "
            "| GUI submit µs (running) | GUI submit µs (parked) | drain µs/task (parked) "
            "| worst gap ms |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in sizes.sizes:
            bridge = _fig(results, f"throughput/bridge/{n}", "us_per_task")
            deque_us = _fig(results, f"throughput/deque/{n}", "us_per_task")
            bare = _fig(results, f"throughput/bare/{n}", "us_per_task")
            for contender, old in _rows(PLAN["throughput"], baseline):
                key = f"throughput/{contender}/{n}{suffix(old)}"
                idle = f"submit_idle/{contender}/{n}{suffix(old)}"
                if not (in_plan(key) or in_plan(idle)):
                    continue
                us = _fig(results, key, "us_per_task")
                speedup = "-" if us is None or bridge is None else f"{bridge / us:.2f}x"
                lines.append(
                    f"| {_label(contender, old, meta)} | {n} | {_num(us, 2)} | "
                    f"{speedup} | {_ratio(us, deque_us)} | {_ratio(us, bare)} | "
                    f"{_num(_fig(results, key, 'gui_submit_us'), 2)} | "
                    f"{_num(_fig(results, idle, 'gui_submit_us'), 2)} | "
                    f"{_num(_fig(results, idle, 'drain_us_per_task'), 2)} | "
                    f"{_num(_fig(results, key, 'worst_gap_ms'))} |"
                )
        lines.append("")

    if any(k.startswith("roundtrip/") for k in [*results, *errors]):
        count = sizes.roundtrips
        lines += [
            f"### Round trip: {count} sequential submit → result on the GUI thread → next",
            "",
            "| contender | median µs | speed-up vs bridge | x deque floor | worst gap ms |",
            "|---|---|---|---|---|",
        ]
        bridge = _fig(results, "roundtrip/bridge", "median_us")
        floor = _fig(results, "roundtrip/deque", "median_us")
        for contender, old in _rows(PLAN["roundtrip"], baseline):
            key = f"roundtrip/{contender}{suffix(old)}"
            if not in_plan(key):
                continue
            us = _fig(results, key, "median_us")
            speedup = "-" if us is None or bridge is None else f"{bridge / us:.2f}x"
            lines.append(
                f"| {_label(contender, old, meta)} | {_num(us)} | {speedup} | "
                f"{_ratio(us, floor)} | {_num(_fig(results, key, 'worst_gap_ms'))} |"
            )
        lines.append("")

    if any(k.startswith("progress/") for k in [*results, *errors]):
        lines += [
            f"### Progress flood: one task, {sizes.flood} progress calls",
            "",
            "Wall time from the submit to the result on the GUI thread; the bare loop makes "
            "the same number of no-op calls on a thread (its floor).",
            "",
            "| contender | wall ms | bare loop ms | x bare | GUI updates | worst gap ms |",
            "|---|---|---|---|---|---|",
        ]
        for contender, old in _rows(PLAN["progress"], baseline):
            key = f"progress/{contender}{suffix(old)}"
            if not in_plan(key):
                continue
            lines.append(
                f"| {_label(contender, old, meta)} | {_num(_fig(results, key, 'wall_ms'))} | "
                f"{_num(_fig(results, key, 'bare_ms'))} | "
                f"{_num(_fig(results, key, 'x_bare'), 2)} | "
                f"{_num(_fig(results, key, 'gui_updates'), 0)} | "
                f"{_num(_fig(results, key, 'worst_gap_ms'))} |"
            )
        lines.append("")

    if any(k.startswith("import/") for k in [*results, *errors]):
        lines += [
            f"### Import time: fresh interpreters, median of {meta['import_runs']} x "
            f"{meta['repeat']}",
            "",
            "| import | ms | x `PySide6.QtCore` |",
            "|---|---|---|",
        ]
        qtcore = _fig(results, "import/qtcore", "ms")
        for contender, old in _rows(PLAN["import"], baseline):
            key = f"import/{contender}{suffix(old)}"
            if not in_plan(key):
                continue
            name = f"`import {IMPORT_MODULES[contender]}`" + (
                f" @old ({meta['baseline']})" if old else ""
            )
            ms = _fig(results, key, "ms")
            lines.append(f"| {name} | {_num(ms)} | {_ratio(ms, qtcore)} |")
        lines.append("")
        # The old revision first, as in the table.
        for key in sorted(breakdown, key=lambda k: not k.endswith(BASELINE_SUFFIX)):
            parts = breakdown[key]
            heavy = sorted(
                ((ms, name) for name, ms in parts.items() if name != "casare_workers"),
                reverse=True,
            )[:6]
            listed = ", ".join(f"`{name.split('.', 1)[1]}` {ms:.0f}" for ms, name in heavy)
            which = " (old)" if key.endswith(BASELINE_SUFFIX) else ""
            lines.append(
                f"`-X importtime`{which}: casare_workers "
                f"{parts.get('casare_workers', 0):.0f} ms cumulative; heaviest submodules "
                f"(ms, cumulative, the first to import a dependency carries it): {listed}."
            )
            lines.append("")

    lines += ["### Targets (issue 14)", ""]
    new_targets = evaluate_targets(results, sizes)
    if baseline:
        old_targets = evaluate_targets(results, sizes, BASELINE_SUFFIX)
        lines += ["| target | old | new | new met? |", "|---|---|---|---|"]
        for old_t, new_t in zip(old_targets, new_targets, strict=True):
            lines.append(
                f"| {new_t.text} | {old_t.measured} | {new_t.measured} | {_mark(new_t.met)} |"
            )
        for t in evaluate_against_baseline(results, sizes):
            lines.append(f"| {t.text} | - | {t.measured} | {_mark(t.met)} |")
    else:
        lines += ["| target | measured | met? |", "|---|---|---|"]
        for t in new_targets:
            lines.append(f"| {t.text} | {t.measured} | {_mark(t.met)} |")
    lines.append("")

    if errors:
        lines += ["### Failed runs", ""]
        for key, tails in errors.items():
            lines.append(f"* `{key}`: failed in {len(tails)} run(s): {tails[-1]}")
        lines.append("")
    return "\n".join(lines)


# -- entry points -------------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes takes integers like 2000,20000: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes needs at least one size >= 1: {text!r}")
    return sizes


def profile_cell(cell: Cell) -> int:
    """Run one cell in this process under cProfile; print its figures and the top 30.

    Sized cells profile only their submit call (with ``submit_idle`` the workers are
    parked meanwhile, so the profile is the GUI thread's cost alone); the others
    profile the whole cell.  Since Python 3.12 cProfile sees every thread.
    """
    global PROFILER
    profiler = PROFILER = cProfile.Profile()
    whole = cell.scenario not in SIZED
    if whole:
        profiler.enable()
    try:
        figures = measure(cell.scenario, cell.contender, cell.n)
    finally:
        if whole:
            profiler.disable()
        PROFILER = None
    print(json.dumps(figures))
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(30)
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=SIZES, help="task counts (default 2000,20000,100000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="processes per cell (median)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="scenarios, contenders or scenario/contender pairs, comma-separated (repeatable)",
    )
    parser.add_argument("--baseline", metavar="REV", help="also run casare cells against REV")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--roundtrips", type=int, default=N_ROUNDTRIPS, help=argparse.SUPPRESS)
    parser.add_argument("--flood", type=int, default=N_PROGRESS, help=argparse.SUPPRESS)
    parser.add_argument("--import-runs", type=int, default=IMPORT_RUNS)
    parser.add_argument(
        "--profile",
        metavar="KEY",
        help="one cell (e.g. submit_idle/then/20000) under cProfile, in-process",
    )
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # a child process: one cell
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--casare-root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(None if argv is None else list(argv))
    sizes = Sizes(args.sizes, args.roundtrips, args.flood)

    if args.cell:
        cell = parse_key(args.cell, sizes)
        try:
            if cell.contender in CASARE:
                check_casare_root(args.casare_root or ROOT)
            figures = measure(cell.scenario, cell.contender, args.n or cell.n)
        except Exception as exc:
            traceback.print_exc()
            # The orchestrator quotes a cell's last line of stderr: make it the error.
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
        print(json.dumps(figures), flush=True)
        return 0
    if args.profile:
        cell = parse_key(args.profile, sizes)
        if cell.contender in CASARE:
            check_casare_root(ROOT)
        return profile_cell(cell)

    only = [token for group in args.only for token in group.split(",") if token]
    unknown = [
        t
        for t in only
        if t not in SCENARIOS and t not in CONTENDERS and t.partition("/")[0] not in PLAN
    ]
    if unknown:
        parser.error(
            f"--only: unknown {', '.join(unknown)} (scenarios: {', '.join(SCENARIOS)}; "
            f"contenders: {', '.join(CONTENDERS)})"
        )
    cells = plan(sizes, only, baseline=args.baseline is not None)
    if not cells:
        parser.error("--only selected no cell")
    try:
        revision = git_revision()
        if package_dirty():
            revision += " + uncommitted changes"
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        if args.baseline:
            parser.error("--baseline needs a git checkout (and git)")
        revision = "not a git checkout"
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/bench_hotpath.py", *sys.argv[1:]]),
        "machine": machine(),
        "revision": revision,
        "baseline_rev": args.baseline,
        "baseline": git_revision(args.baseline) if args.baseline else None,
        "repeat": args.repeat,
        "import_runs": args.import_runs,
        "sizes": list(sizes.sizes),
        "roundtrips": sizes.roundtrips,
        "flood": sizes.flood,
        "load_before": load_average(),
    }
    with ExitStack() as stack:
        roots = {False: ROOT}
        if args.baseline:
            roots[True] = stack.enter_context(baseline_checkout(args.baseline))
            meta["baseline_path"] = str(roots[True])
        runs, errors, breakdown = run_plan(cells, args.repeat, args.import_runs, roots)
    meta["load_after"] = load_average()
    results = {key: median_of(values) for key, values in runs.items() if values}
    print(render_markdown(results, errors, breakdown, meta, sizes))
    if args.json:
        raw: dict[str, Any] = {
            "meta": meta,
            "runs": runs,
            "errors": errors,
            "results": results,
            "import_breakdown": breakdown,
            "targets": [t.__dict__ for t in evaluate_targets(results, sizes)],
        }
        if args.baseline:
            old = evaluate_targets(results, sizes, BASELINE_SUFFIX)
            raw["targets_old"] = [t.__dict__ for t in old]
            against = evaluate_against_baseline(results, sizes)
            raw["targets_against_baseline"] = [t.__dict__ for t in against]
        args.json.write_text(json.dumps(raw, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
