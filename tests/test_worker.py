from __future__ import annotations

import threading
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, Qt, QThreadPool
from PySide6.QtWidgets import QLabel, QWidget

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
        Worker(42)


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


# -- the subclass form: data in through the constructor ----------------------------------


def test_worker_subclass_receives_the_constructor_arguments_in_work(
    manager: WorkerManager,
) -> None:
    # The guide's example: Export(rows) used to raise "expects a callable first".
    class Export(Worker[int]):
        def work(self, rows: list[str], ctx: TaskContext, *, sep: str = ",") -> int:
            for i, _row in enumerate(rows):
                ctx.raise_if_cancelled()
                ctx.progress(i + 1, len(rows))
            return len(sep.join(rows))

    worker = Export(["a", "b", "c"], sep="--")
    events = collect(worker)
    manager.start(worker)
    assert wait_for_handle(worker.handle) == len("a--b--c")
    assert events == ["started", ("progress", 3, 3), ("result", 7), "finished"]
    assert worker.handle.name.endswith("Export")


def test_worker_subclass_arguments_work_cannot_take_fail_at_construction(qapp: Any) -> None:
    class Export(Worker[int]):
        def work(self, rows: list[str], ctx: TaskContext) -> int:
            return len(rows)

    with pytest.raises(TypeError, match=r"passes its arguments to .*Export\.work\(\)"):
        Export()  # rows missing
    with pytest.raises(TypeError, match=r"Export\.work\(\)"):
        Export(["a"], ["b"])  # one positional argument too many: it would land on ctx
    with pytest.raises(TypeError, match="do not pass it yourself"):
        Export(["a"], ctx=None)


def test_worker_subclass_with_its_own_init_and_attributes(qapp: Any, qtbot: Any) -> None:
    class Export(Worker[int]):
        def __init__(self, rows: list[str]) -> None:
            self.rows = rows  # before or after super().__init__(): both work
            super().__init__()

        def work(self, ctx: TaskContext) -> int:
            return len(self.rows)

    worker = Export(["a", "b"])
    with qtbot.waitSignal(worker.signals.result, timeout=5000) as blocker:
        QThreadPool.globalInstance().start(worker)
    assert blocker.args == [2]


# -- an owner of its own, on any pool ----------------------------------------------------------


def test_worker_on_the_global_pool_with_an_owner_delivers_nothing_once_it_is_destroyed(
    qapp: Any, qtbot: Any, gate: Gate
) -> None:
    # A lambda capturing a deleted label used to be called ("Internal C++ object
    # already deleted"): a Worker on QThreadPool.globalInstance() could not have an owner.
    label = QLabel()
    entered = threading.Event()
    stopped: list[bool] = []

    def render(ctx: TaskContext) -> str:
        entered.set()
        gate.wait()
        stopped.append(ctx.cancelled)
        return "rendered"

    worker = Worker(render)
    worker.owner = label
    assert worker.owner is label
    calls: list[str] = []

    def show(text: str) -> None:
        calls.append(text)
        label.setText(text)

    worker.signals.result.connect(show)
    worker.signals.finished.connect(lambda: calls.append("finished"))
    QThreadPool.globalInstance().start(worker)
    assert entered.wait(10)
    shiboken6.delete(label)
    gate.open()
    qtbot.waitUntil(worker.handle.done, timeout=5000)
    assert QThreadPool.globalInstance().waitForDone(5000)
    qapp.processEvents()
    worker.handle._engine.flush()
    assert calls == []  # nothing reached the dead owner, not even finished
    assert stopped == [True]  # the running work was asked to stop
    assert worker.handle.state is TaskState.CANCELLED
    assert worker.handle.cancel_reason == "owner destroyed"
    assert worker.owner is None


def test_worker_owner_window_closed_cancels_a_queued_worker(qapp: Any, qtbot: Any) -> None:
    pool = QThreadPool()
    pool.setMaxThreadCount(1)
    blocker_gate = threading.Event()
    window = QWidget()
    qtbot.addWidget(window)
    window.show()
    ran = threading.Event()
    blocker = Worker(blocker_gate.wait, 10)
    victim = Worker(ran.set)
    victim.owner = window
    events = collect(victim)
    pool.start(blocker)
    pool.start(victim)
    window.close()
    qtbot.waitUntil(victim.handle.done, timeout=5000)
    blocker_gate.set()
    assert pool.waitForDone(5000)
    qtbot.waitUntil(lambda: "finished" in events, timeout=5000)
    assert not ran.is_set()
    assert events == ["cancelled", "finished"]  # the owner lives: it hears of it
    assert victim.handle.cancel_reason == "window closed"


def test_worker_owner_on_the_manager_and_misuse(manager: WorkerManager, qtbot: Any) -> None:
    owner = QObject()
    worker = Worker(abs, -3)
    worker.owner = owner
    handle = manager.start(worker)
    assert handle.owner is owner
    assert wait_for_handle(handle) == 3
    with pytest.raises(AlreadyStartedError, match="set its owner before starting"):
        worker.owner = QObject()
    with pytest.raises(TypeError, match="owner must be a QObject"):
        Worker(abs, 1).owner = "main window"  # type: ignore[assignment]
    other = Worker(abs, 1)
    other.owner = owner
    with pytest.raises(ValueError, match="owner of its own"):
        manager.options(owner=QObject()).start(other)
    other.owner = None
    assert other.owner is None
    manager.start(other)
    assert wait_for_handle(other.handle) == 1
