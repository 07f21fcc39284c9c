from __future__ import annotations

import threading
from typing import Any

import pytest
from PySide6.QtCore import Qt, QThreadPool

from casare_workers import AlreadyStartedError, TaskContext, TaskState, Worker, WorkerManager
from casare_workers.pytest_plugin import assert_gui_thread, wait_for_handle
from tests.conftest import Gate


def collect(worker: Worker[Any]) -> list[Any]:
    events: list[Any] = []
    sig = worker.signals
    sig.started.connect(lambda: events.append("started"))
    sig.progress.connect(lambda c, t: events.append(("progress", c, t)))

    def on_result(value: Any) -> None:
        assert_gui_thread()
        events.append(("result", value))

    sig.result.connect(on_result)
    sig.error.connect(lambda e: events.append(("error", type(e.exception).__name__)))
    sig.cancelled.connect(lambda: events.append("cancelled"))
    sig.finished.connect(lambda: events.append("finished"))
    return events


def test_worker_with_function_on_the_manager(manager: WorkerManager) -> None:
    worker = Worker(pow, 2, 10)
    events = collect(worker)
    handle = manager.start(worker)
    assert handle is worker.handle
    assert handle.signals is worker.signals
    assert wait_for_handle(handle) == 1024
    assert events == ["started", ("result", 1024), "finished"]


def test_worker_subclass_overrides_work_and_gets_ctx(manager: WorkerManager) -> None:
    class Export(Worker[int]):
        def __init__(self, rows: list[str]) -> None:
            super().__init__()
            self.rows = rows

        def work(self, ctx: TaskContext) -> int:
            for i, _row in enumerate(self.rows):
                ctx.progress(i + 1, len(self.rows))
            return len(self.rows)

    worker = Export(["a", "b", "c"])
    events = collect(worker)
    manager.options(pool="background").start(worker)
    assert wait_for_handle(worker.handle) == 3
    assert events == ["started", ("progress", 3, 3), ("result", 3), "finished"]


def test_worker_on_a_plain_qthreadpool_delivers_on_gui_thread(qapp: Any, qtbot: Any) -> None:
    worker = Worker(sum, [1, 2, 3])
    events = collect(worker)
    with qtbot.waitSignal(worker.signals.finished, timeout=5000):
        QThreadPool.globalInstance().start(worker)
    assert events == ["started", ("result", 6), "finished"]
    assert worker.handle.state is TaskState.SUCCEEDED


def test_worker_error_on_a_plain_qthreadpool(qapp: Any, qtbot: Any) -> None:
    worker = Worker(int, "nope")
    events = collect(worker)
    with qtbot.waitSignal(worker.signals.finished, timeout=5000):
        QThreadPool.globalInstance().start(worker)
    assert events == ["started", ("error", "ValueError"), "finished"]


def test_worker_cancelled_before_the_pool_runs_it(qapp: Any, qtbot: Any, gate: Gate) -> None:
    pool = QThreadPool()
    pool.setMaxThreadCount(1)
    ran = threading.Event()
    blocker = Worker(gate.wait)
    victim = Worker(ran.set)
    events = collect(victim)
    pool.start(blocker)
    pool.start(victim)
    assert victim.cancel() is True
    with qtbot.waitSignal(victim.signals.finished, timeout=5000):
        pass
    gate.open()
    assert pool.waitForDone(5000)
    assert not ran.is_set()
    assert events == ["cancelled", "finished"]


def test_tutorial_progress_callback(manager: WorkerManager) -> None:
    def execute_this_fn(progress_callback: Any) -> str:
        for n in range(5):
            progress_callback.emit(n * 100 // 4)
        return "Done."

    worker = Worker(execute_this_fn)
    events = collect(worker)
    manager.start(worker)
    assert wait_for_handle(worker.handle) == "Done."
    assert ("progress", 100, 100) in events


def test_starting_a_worker_twice_is_an_error(manager: WorkerManager, caplog: Any) -> None:
    worker = Worker(int, "1")
    manager.start(worker)
    with pytest.raises(AlreadyStartedError, match="runs once"):
        manager.start(worker)
    wait_for_handle(worker.handle)
    worker.run()  # as a QThreadPool would: refused and logged, not run again
    assert any("started twice" in r.getMessage() for r in caplog.records)


def test_worker_needs_a_function_or_an_override(qapp: Any) -> None:
    with pytest.raises(TypeError, match="override work"):
        Worker()
    with pytest.raises(TypeError, match="expects a callable"):
        Worker(42)  # type: ignore[arg-type]


class _LingeringWorker(Worker[int]):
    """Returns from run() only after its result reached the GUI thread.

    That is the order that decides where a fire-and-forget worker dies: the pool deletes
    the runnable (and so drops the last reference to it) on its own thread after run().
    """

    def __init__(self, value: int, delivered: threading.Event) -> None:
        super().__init__(abs, value)
        self._delivered = delivered

    def run(self) -> None:
        super().run()
        assert self._delivered.wait(10), "the result was not delivered"


def test_fire_and_forget_worker_signals_are_destroyed_on_the_gui_thread(
    qapp: Any, qtbot: Any
) -> None:
    pool = QThreadPool()
    pool.setMaxThreadCount(4)
    gui = threading.get_ident()
    died_on: list[int] = []
    results: list[int] = []
    for n in range(20):
        delivered = threading.Event()
        worker = _LingeringWorker(-n, delivered)
        sig = worker.signals
        sig.result.connect(results.append)
        sig.result.connect(lambda _v, d=delivered: d.set())
        sig.destroyed.connect(
            lambda *_: died_on.append(threading.get_ident()), Qt.ConnectionType.DirectConnection
        )
        pool.start(worker)
    del worker, sig
    qtbot.waitUntil(lambda: len(results) == 20, timeout=10_000)
    assert pool.waitForDone(10_000)
    qtbot.waitUntil(lambda: len(died_on) == 20, timeout=10_000)
    assert sorted(results) == list(range(20))
    assert set(died_on) == {gui}, "a WorkerSignals QObject was destroyed on a pool thread"
