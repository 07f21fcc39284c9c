"""WorkerSignals' ports: what a Qt developer connects behaves as with a PySide signal."""

from __future__ import annotations

import functools
import gc
import sys
import threading
import weakref
from types import TracebackType
from typing import Any

import pytest
from PySide6.QtCore import SIGNAL, QObject, Qt, QThread, Signal, Slot
from PySide6.QtTest import QSignalSpy

from casare_workers import SignalPort, WorkerManager, WorkerSignals
from casare_workers.pytest_plugin import wait_for_handle


class _Receiver(QObject):
    got_slot = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.senders: list[QObject | None] = []
        self.threads: list[QThread] = []

    @Slot(object)
    def on_result(self, value: object) -> None:
        self.calls.append(("slot", (value,)))
        self.senders.append(self.sender())

    def plain_method(self, value: object) -> None:  # a QObject method without @Slot
        self.calls.append(("method", (value,)))
        self.threads.append(QThread.currentThread())


class _Plain:
    def __init__(self, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.calls = calls

    def two(self, a: int, b: int) -> None:
        self.calls.append(("plain.two", (a, b)))

    def one(self, a: int) -> None:
        self.calls.append(("plain.one", (a,)))


def test_signals_are_ports_over_real_qt_signals(qapp: Any) -> None:
    sig = WorkerSignals()
    assert isinstance(sig.finished, SignalPort)
    assert sig.finished is sig.finished  # made once per object
    names = {
        bytes(sig.metaObject().method(i).methodSignature().data()).decode()
        for i in range(sig.metaObject().methodOffset(), sig.metaObject().methodCount())
    }
    assert {
        "started()",
        "progress(qlonglong,qlonglong)",
        "result(PyObject)",
        "finished()",
    } <= names
    assert sig.finished.signal == "2finished()"


def test_plain_callables_get_the_arguments_they_accept_as_in_pyside(qapp: Any) -> None:
    sig = WorkerSignals()
    calls: list[tuple[str, tuple[Any, ...]]] = []
    plain = _Plain(calls)
    sig.progress.connect(lambda: calls.append(("none", ())))
    sig.progress.connect(lambda a: calls.append(("one", (a,))))
    sig.progress.connect(lambda a, b, c=3: calls.append(("defaults", (a, b, c))))
    sig.progress.connect(lambda *args: calls.append(("varargs", args)))
    sig.progress.connect(plain.one)
    sig.progress.connect(plain.two)
    sig.progress.connect(functools.partial(lambda tag, a, b: calls.append((tag, (a, b))), "p"))
    sig.progress.emit(4, 10)
    assert calls == [
        ("none", ()),
        ("one", (4,)),
        ("defaults", (4, 10, 3)),
        ("varargs", (4, 10)),
        ("plain.one", (4,)),
        ("plain.two", (4, 10)),
        ("p", (4, 10)),
    ]


def test_a_method_of_a_plain_object_is_held_weakly_and_dropped_with_it(qapp: Any) -> None:
    sig = WorkerSignals()
    calls: list[tuple[str, tuple[Any, ...]]] = []
    plain = _Plain(calls)
    ref = weakref.ref(plain)
    sig.result.connect(plain.one)
    del plain
    gc.collect()
    assert ref() is None  # connecting did not keep it alive
    sig.result.emit(1)
    assert calls == []


def test_qobject_methods_and_cxx_slots_become_real_qt_connections(qapp: Any) -> None:
    sig = WorkerSignals()
    receiver = _Receiver()
    sig.result.connect(receiver.on_result)
    sig.result.connect(receiver.plain_method)
    sig.result.emit("v")
    assert receiver.calls == [("slot", ("v",)), ("method", ("v",))]
    assert receiver.senders == [sig]  # sender() works: a real Qt connection
    assert sig.result.disconnect(receiver.on_result)
    sig.result.emit("w")
    assert receiver.calls[-1] == ("method", ("w",))


def test_a_qobject_slot_in_another_thread_is_called_there(qapp: Any, qtbot: Any) -> None:
    thread = QThread()
    receiver = _Receiver()
    receiver.moveToThread(thread)
    thread.start()
    try:
        sig = WorkerSignals()
        sig.result.connect(receiver.plain_method)
        sig.result.emit(1)
        sig.result.emit(2)
        qtbot.waitUntil(lambda: len(receiver.threads) == 2, timeout=5000)
        assert receiver.threads == [thread, thread]
    finally:
        thread.quit()
        thread.wait(5000)


def test_qt_spies_and_string_connections_see_port_emissions(qapp: Any) -> None:
    sig = WorkerSignals()
    spy = QSignalSpy(sig, SIGNAL("finished()"))  # type: ignore[call-overload]
    spy_result = QSignalSpy(sig.result.qt)
    got: list[object] = []
    QObject.connect(sig, SIGNAL("result(PyObject)"), got.append)
    sig.result.emit(5)
    sig.finished.emit()
    assert spy.count() == 1
    assert spy_result.count() == 1
    assert got == [5]


def test_qtbot_wait_signal_works_on_a_port(manager: WorkerManager, qtbot: Any) -> None:
    handle = manager.submit(abs, -2)
    with qtbot.waitSignal(handle.signals.result, timeout=5000) as blocker:
        pass
    assert blocker.args == [2]


def test_disconnect_by_callable_by_handle_and_everything(qapp: Any) -> None:
    sig = WorkerSignals()
    calls: list[str] = []

    def a() -> None:
        calls.append("a")

    handle = sig.finished.connect(lambda: calls.append("b"))
    sig.finished.connect(a)
    assert sig.finished.disconnect(a)
    assert sig.finished.disconnect(handle)
    sig.finished.emit()
    assert calls == []
    sig.finished.connect(a)
    assert sig.finished.disconnect()
    sig.finished.emit()
    assert calls == []
    with pytest.warns(RuntimeWarning, match="Failed to disconnect"):
        assert not sig.finished.disconnect(a)


def test_unique_connection_connects_once(qapp: Any) -> None:
    sig = WorkerSignals()
    calls: list[str] = []

    def a() -> None:
        calls.append("a")

    sig.finished.connect(a, Qt.ConnectionType.UniqueConnection)
    sig.finished.connect(a, Qt.ConnectionType.UniqueConnection)
    sig.finished.emit()
    assert calls == ["a"]


def test_connecting_during_an_emission_does_not_call_the_new_slot_then(qapp: Any) -> None:
    sig = WorkerSignals()
    calls: list[str] = []

    def late() -> None:
        calls.append("late")

    def first() -> None:
        calls.append("first")
        sig.finished.connect(late)
        sig.finished.disconnect(second)

    def second() -> None:
        calls.append("second")

    sig.finished.connect(first)
    sig.finished.connect(second)
    sig.finished.emit()
    assert calls == ["first"]  # late: connected during it; second: disconnected during it
    calls.clear()
    sig.finished.disconnect(first)
    sig.finished.emit()
    assert calls == ["late"]


def test_a_raising_slot_goes_to_excepthook_and_the_others_still_run(
    qapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[type[BaseException], str, bool]] = []

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        seen.append((kind, str(exc), tb is not None))

    monkeypatch.setattr(sys, "excepthook", hook)
    sig = WorkerSignals()
    calls: list[int] = []

    def bad(value: int) -> None:
        raise ValueError(f"bad {value}")

    sig.result.connect(bad)
    sig.result.connect(calls.append)
    sig.result.emit(1)
    assert seen == [(ValueError, "bad 1", True)]  # with its traceback, unlike PySide
    assert calls == [1]


def test_connect_rejects_what_is_not_callable(qapp: Any) -> None:
    sig = WorkerSignals()
    with pytest.raises(TypeError, match=r"result.connect\(\) expects a callable"):
        sig.result.connect(42)  # type: ignore[arg-type]


def test_emit_from_another_thread_calls_plain_slots_on_the_gui_thread(
    qapp: Any, qtbot: Any
) -> None:
    sig = WorkerSignals()
    ran_on: list[bool] = []
    sig.result.connect(
        lambda _v: ran_on.append(threading.current_thread() is threading.main_thread())
    )
    thread = threading.Thread(target=sig.result.emit, args=(1,))
    thread.start()
    thread.join(10)
    qtbot.waitUntil(lambda: bool(ran_on), timeout=5000)
    assert ran_on == [True]


def test_connections_are_dropped_after_finished(manager: WorkerManager) -> None:
    handle = manager.submit(abs, -1)
    signals = handle.signals
    calls: list[object] = []
    signals.result.connect(calls.append)
    wait_for_handle(handle)
    assert calls == [1]
    signals.result.emit(2)  # the object the user kept: its callables were released
    assert calls == [1]


def test_signals_with_port_connections_are_freed_by_reference_counting(
    qapp: Any, no_cyclic_gc: None
) -> None:
    sig = WorkerSignals()
    for name in ("started", "progress", "status", "result", "error", "cancelled", "finished"):
        getattr(sig, name).connect(lambda *_: None)
    ref = weakref.ref(sig)
    del sig
    assert ref() is None  # no cycle through the ports: the QObject dies here, not in a GC
