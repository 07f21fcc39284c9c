from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import weakref
from typing import Any

import pytest
from PySide6.QtCore import QObject, QThread, QTimer
from PySide6.QtWidgets import QWidget

from casare_workers import (
    ConfigurationError,
    ManagerShutdownError,
    TaskCancelledError,
    TaskContext,
    TaskError,
    TaskState,
    TaskTimeoutError,
    UnknownPoolError,
    WorkerManager,
)
from casare_workers.pytest_plugin import assert_gui_thread, assert_worker_thread, wait_for_handle
from tests.conftest import Gate


def record(handle: Any) -> list[Any]:
    """Connect every signal of ``handle`` to a list, checking each runs on the GUI thread."""
    events: list[Any] = []

    def on(name: str) -> Any:
        def slot(*args: Any) -> None:
            assert_gui_thread()
            events.append((name, *args) if args else name)

        return slot

    sig = handle.signals
    for name in ("started", "progress", "status", "result", "error", "cancelled", "finished"):
        getattr(sig, name).connect(on(name))
    return events


def test_submit_delivers_result_then_finished_on_gui_thread(manager: WorkerManager) -> None:
    def work(x: int) -> int:
        assert_worker_thread()
        return x * 2

    handle = manager.submit(work, 21)
    events = record(handle)
    assert wait_for_handle(handle) == 42
    assert events == ["started", ("result", 42), "finished"]
    assert handle.state is TaskState.SUCCEEDED


def test_error_carries_exception_and_traceback(manager: WorkerManager) -> None:
    def boom() -> None:
        raise KeyError("missing")

    handle = manager.submit(boom)
    events = record(handle)
    with pytest.raises(KeyError, match="missing") as info:
        wait_for_handle(handle)
    assert events[0] == "started"
    assert events[-1] == "finished"
    kind, error = events[1]
    assert kind == "error"
    assert isinstance(error, TaskError)
    assert error.exception is info.value  # the user's exception, unchanged
    assert "in boom" in error.traceback
    assert "KeyError: 'missing'" in error.traceback
    assert handle.state is TaskState.FAILED


def test_ctx_progress_is_coalesced_and_final_value_arrives_before_finished(
    manager: WorkerManager,
) -> None:
    def count(ctx: TaskContext) -> str:
        for i in range(50_000):
            ctx.progress(i + 1, 50_000)
        ctx.status("done counting")
        return "ok"

    handle = manager.submit(count)
    events = record(handle)
    wait_for_handle(handle)
    progress = [e for e in events if isinstance(e, tuple) and e[0] == "progress"]
    assert progress, "no progress delivered"
    assert len(progress) < 1000  # coalesced, not 50 000 deliveries
    assert progress[-1] == ("progress", 50_000, 50_000)
    assert events.index(progress[-1]) < events.index(("result", "ok"))
    assert ("status", "done counting") in events
    assert events[-1] == "finished"


def test_progress_callback_keyword_for_tutorial_code(manager: WorkerManager) -> None:
    def tutorial(n: int, progress_callback: Any) -> int:
        for i in range(n):
            progress_callback.emit(i * 100 // n)
        progress_callback(100)
        return n

    handle = manager.submit(tutorial, 4)
    events = record(handle)
    assert wait_for_handle(handle) == 4
    assert ("progress", 100, 100) in events


def test_passing_ctx_yourself_is_rejected(manager: WorkerManager) -> None:
    def job(ctx: TaskContext) -> None:
        pass

    with pytest.raises(TypeError, match="do not pass ctx"):
        manager.submit(job, ctx=None)


def test_submit_rejects_non_callable(manager: WorkerManager) -> None:
    with pytest.raises(TypeError, match=r"submit\(\) expects a callable.*got 3 \(int\)"):
        manager.submit(3)  # type: ignore[call-overload]


def test_unknown_pool_names_the_pools_there_are(manager: WorkerManager) -> None:
    with pytest.raises(UnknownPoolError, match=r"no pool named 'gpu'.*'io', 'cpu', 'background'"):
        manager.options(pool="gpu")


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("timeout", 0, ConfigurationError),
        ("timeout", -1, ConfigurationError),
        ("timeout", float("nan"), ConfigurationError),
        ("timeout", "5", ConfigurationError),
        ("priority", 1.5, ConfigurationError),
        ("priority", True, ConfigurationError),
        ("key", ["not", "hashable"], TypeError),
        ("owner", "a string", TypeError),
        ("name", 3, TypeError),
    ],
)
def test_invalid_options_are_rejected_with_a_clear_error(
    manager: WorkerManager, option: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option if option != "owner" else "owner must be a QObject"):
        manager.options(**{option: value})


def test_options_do_not_collide_with_user_kwargs(manager: WorkerManager) -> None:
    def fetch(url: str, *, timeout: int, pool: str, key: str) -> tuple[str, int, str, str]:
        return url, timeout, pool, key

    handle = manager.options(timeout=5, pool="background").submit(
        fetch, "u", timeout=30, pool="mine", key="k"
    )
    assert wait_for_handle(handle) == ("u", 30, "mine", "k")
    assert handle.pool == "background"


def test_cancel_queued_task_never_runs(qapp: Any, gate: Gate) -> None:
    with WorkerManager(pools={"io": 1}) as manager:
        blocker = manager.submit(gate.wait)
        ran = threading.Event()
        queued = manager.submit(ran.set)
        events = record(queued)
        assert queued.state is TaskState.QUEUED
        assert queued.cancel() is True
        assert queued.cancel() is False  # exactly once
        gate.open()
        wait_for_handle(blocker)
        with pytest.raises(TaskCancelledError):
            wait_for_handle(queued)
        assert not ran.is_set()
        assert events == ["cancelled", "finished"]


def test_cancel_running_task_ends_it_now_and_sets_ctx_cancelled(
    manager: WorkerManager, make_gate: Any
) -> None:
    started, release = make_gate(), make_gate()
    seen: list[bool] = []

    def job(ctx: TaskContext) -> str:
        started.open()
        release.wait()
        seen.append(ctx.cancelled)
        return "late result"

    handle = manager.submit(job)
    events = record(handle)
    started.wait()
    assert handle.cancel() is True
    assert handle.state is TaskState.CANCELLED  # decided now, not when the function returns
    with pytest.raises(TaskCancelledError):
        wait_for_handle(handle)
    assert events == ["started", "cancelled", "finished"]
    stats = manager.statistics()["io"]
    assert stats.abandoned == 1
    assert stats.cancelled == 1
    release.open()
    assert manager.wait_for_done(5)
    for _thread in manager.threads():  # the function returns; its result is discarded
        pass
    assert handle.state is TaskState.CANCELLED


def test_raise_if_cancelled_ends_task_as_cancelled(manager: WorkerManager, make_gate: Any) -> None:
    started, release = make_gate(), make_gate()
    finished_cleanly = threading.Event()

    def job(ctx: TaskContext) -> None:
        started.open()
        release.wait()
        try:
            ctx.raise_if_cancelled()
        finally:
            finished_cleanly.set()

    handle = manager.submit(job)
    started.wait()
    handle.cancel()
    release.open()
    assert finished_cleanly.wait(5)
    assert handle.state is TaskState.CANCELLED


def test_ctx_wait_wakes_on_cancel(manager: WorkerManager, gate: Gate) -> None:
    woke = threading.Event()

    def poller(ctx: TaskContext) -> None:
        gate.open()
        if ctx.wait(30):
            woke.set()

    handle = manager.submit(poller)
    gate.wait()
    handle.cancel()
    assert woke.wait(5)


def test_timeout_ends_task_with_timeout_error(manager: WorkerManager, gate: Gate) -> None:
    seen_cancel = threading.Event()

    def slow(ctx: TaskContext) -> None:
        if ctx.wait(30):
            seen_cancel.set()

    handle = manager.options(timeout=0.05).submit(slow)
    with pytest.raises(TaskTimeoutError, match=r"ran longer than its timeout of 0\.05 s"):
        wait_for_handle(handle)
    assert seen_cancel.wait(5)  # the function was asked to stop
    assert handle.state is TaskState.FAILED


def test_priority_orders_the_queue(qapp: Any, gate: Gate) -> None:
    order: list[str] = []
    with WorkerManager(pools={"io": 1}) as manager:
        manager.submit(gate.wait)
        for name, priority in [("low", -1), ("normal", 0), ("high", 5), ("normal2", 0)]:
            manager.options(priority=priority).submit(order.append, name)
        gate.open()
        assert manager.wait_for_done(5)
    assert order == ["high", "normal", "normal2", "low"]


def test_pool_never_runs_more_than_max_workers(qapp: Any, make_gate: Any) -> None:
    barrier = threading.Barrier(2, timeout=5)
    release = make_gate()
    running = 0
    peak = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            barrier.wait()  # proves two run in parallel
            release.wait()
        finally:
            with lock:
                running -= 1

    with WorkerManager(pools={"io": 2}) as manager:
        handles = [manager.submit(job) for _ in range(2)]
        third = manager.submit(lambda: None)
        assert third.state is TaskState.QUEUED
        barrier_done = [h for h in handles if h.state is TaskState.RUNNING]
        release.open()
        assert manager.wait_for_done(5)
    assert peak == 2
    assert len(barrier_done) <= 2


def test_then_runs_exactly_one_callback_on_gui_thread(manager: WorkerManager) -> None:
    calls: list[Any] = []

    def on_result(value: int) -> None:
        assert_gui_thread()
        calls.append(("result", value))

    ok = manager.submit(int, "7").then(on_result, lambda e: calls.append("bad"))
    bad = manager.submit(int, "x").then(lambda v: calls.append("bad"), lambda e: calls.append(e))
    assert manager.wait_for_done(5)
    assert calls[0] == ("result", 7)
    assert isinstance(calls[1], TaskError)
    assert isinstance(calls[1].exception, ValueError)
    assert len(calls) == 2
    late: list[int] = []
    ok.then(late.append)  # after delivery: runs on the next drain
    assert late == []
    manager.engine.flush()
    assert late == [7]
    assert bad.state is TaskState.FAILED


def test_then_is_skipped_when_context_is_destroyed(manager: WorkerManager, gate: Gate) -> None:
    context = QObject()
    calls: list[Any] = []
    handle = manager.submit(gate.wait).then(calls.append, context=context)
    context.deleteLater()
    QThread.currentThread()  # keep the GUI thread busy-free
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(context, QEvent.Type.DeferredDelete)
    gate.open()
    wait_for_handle(handle)
    assert calls == []


def test_then_with_context_in_another_thread_runs_there(
    manager: WorkerManager, qtbot: Any
) -> None:
    thread = QThread()
    receiver = QObject()
    receiver.moveToThread(thread)
    thread.start()
    ran_on: list[QThread] = []
    done = threading.Event()

    def on_result(value: int) -> None:
        ran_on.append(QThread.currentThread())
        done.set()

    try:
        manager.submit(int, "1").then(on_result, context=receiver)
        assert manager.wait_for_done(5)
        assert done.wait(5)
        assert ran_on == [thread]
    finally:
        thread.quit()
        thread.wait(5000)
        receiver.deleteLater()


def test_exception_in_continuation_is_logged_and_delivery_goes_on(
    manager: WorkerManager, caplog: pytest.LogCaptureFixture
) -> None:
    after: list[int] = []

    def bad(value: int) -> None:
        raise RuntimeError("slot bug")

    manager.submit(int, "1").then(bad)
    manager.submit(int, "2").then(after.append)
    assert manager.wait_for_done(5)
    assert after == [2]
    assert any("slot bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_exception_in_connected_slot_does_not_stop_the_engine(
    manager: WorkerManager, qtbot: Any
) -> None:
    after: list[int] = []

    def bad_slot(value: Any) -> None:
        raise RuntimeError("user slot bug")

    first = manager.submit(int, "1")
    first.signals.result.connect(bad_slot)
    second = manager.submit(int, "2")
    second.signals.result.connect(after.append)
    with qtbot.capture_exceptions() as exceptions:
        assert manager.wait_for_done(5)
    assert after == [2]
    assert [str(e[1]) for e in exceptions] == ["user slot bug"]


def test_blocking_result_on_gui_thread_without_timeout_refuses(
    manager: WorkerManager, gate: Gate
) -> None:
    from casare_workers import BlockingCallError

    handle = manager.submit(gate.wait)
    with pytest.raises(BlockingCallError, match="freeze the window"):
        handle.result()
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.01)
    gate.open()
    wait_for_handle(handle)


def test_blocking_result_from_a_worker_thread(manager: WorkerManager) -> None:
    inner = manager.submit(int, "5")
    outer = manager.submit(lambda: inner.result(timeout=5) + 1)
    assert wait_for_handle(outer) == 6


def test_future_view_mirrors_and_cancels(manager: WorkerManager, gate: Gate) -> None:
    handle = manager.submit(int, "9")
    assert handle.future.result(timeout=5) == 9
    blocked = manager.submit(gate.wait)
    assert blocked.future.cancel() is True
    assert blocked.state is TaskState.CANCELLED
    gate.open()
    assert manager.wait_for_done(5)


def test_call_in_gui_thread_from_any_kind_of_thread(manager: WorkerManager) -> None:
    import concurrent.futures

    def where() -> bool:
        return manager.engine.is_gui_thread()

    results: list[bool] = []
    plain = threading.Thread(
        target=lambda: results.append(manager.call_in_gui_thread(where).result(5))
    )
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        from_pool = executor.submit(lambda: manager.call_in_gui_thread(where))
        plain.start()
        from_task = manager.submit(lambda: manager.call_in_gui_thread(where).result(5))
        while plain.is_alive() or not from_pool.done():
            manager.wait_for_done(0.05)
        plain.join(5)
        assert from_pool.result().result(5) is True
    assert wait_for_handle(from_task) is True
    assert results == [True]
    assert manager.call_in_gui_thread(where).result(0) is True  # on the GUI thread: immediate


def test_owner_destroyed_cancels_and_delivers_nothing(qapp: Any, make_gate: Any) -> None:
    manager = WorkerManager(pools={"io": 1})
    started, release = make_gate(), make_gate()
    widget = QWidget()
    calls: list[Any] = []
    observed_cancel = threading.Event()

    def job(ctx: TaskContext) -> None:
        started.open()
        release.wait()
        if ctx.cancelled:
            observed_cancel.set()

    opts = manager.options(owner=widget)
    running = opts.submit(job)
    running.signals.finished.connect(lambda: calls.append("finished"))
    running.then(calls.append, calls.append, lambda: calls.append("cancelled"))
    started.wait()
    queued = [opts.submit(lambda: calls.append("ran")) for _ in range(3)]
    widget.deleteLater()
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(widget, QEvent.Type.DeferredDelete)
    release.open()
    assert observed_cancel.wait(5)
    assert manager.wait_for_done(5)
    assert running.state is TaskState.CANCELLED
    assert all(task.state is TaskState.CANCELLED for task in queued)
    assert running.cancel_reason == "owner destroyed"
    assert running.owner is None
    assert calls == []
    assert manager.shutdown(5).clean


def test_key_supersedes_previous_task(manager: WorkerManager, make_gate: Any) -> None:
    started, release = make_gate(), make_gate()
    delivered: list[str] = []

    def search(text: str) -> str:
        if text == "ab":
            started.open()
            release.wait()
        return text

    opts = manager.options(key="search")
    old = opts.submit(search, "ab").then(delivered.append)
    started.wait()
    new = opts.submit(search, "abc").then(delivered.append)
    assert old.state is TaskState.CANCELLED
    assert old.cancel_reason == "superseded"
    release.open()
    assert manager.wait_for_done(5)
    assert delivered == ["abc"]
    assert new.state is TaskState.SUCCEEDED


def test_keys_are_scoped_per_owner(manager: WorkerManager, gate: Gate) -> None:
    a, b = QObject(), QObject()
    first = manager.options(owner=a, key="k").submit(gate.wait)
    second = manager.options(owner=b, key="k").submit(gate.wait)
    assert first.state is not TaskState.CANCELLED
    gate.open()
    assert manager.wait_for_done(5)
    assert first.state is second.state is TaskState.SUCCEEDED


def test_statistics_add_up_and_busy_changes(manager: WorkerManager, qtbot: Any) -> None:
    busy: list[bool] = []
    manager.busy_changed.connect(busy.append)

    def maybe_fail(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(i)
        return i

    handles = [manager.submit(maybe_fail, i) for i in range(30)]
    handles[-1].cancel()
    assert manager.wait_for_done(5)
    stats = manager.statistics()["io"]
    assert stats.submitted == 30
    assert stats.succeeded + stats.failed + stats.cancelled == 30
    assert stats.failed == sum(1 for h in handles if h.state is TaskState.FAILED) == 10
    assert stats.queued == stats.running == 0
    assert busy == [True, False]


def test_statistics_changed_is_rate_limited(manager: WorkerManager, qtbot: Any) -> None:
    emitted: list[Any] = []
    manager.statistics_changed.connect(emitted.append)
    for _ in range(500):
        manager.submit(int, "1")
    with qtbot.waitSignal(manager.busy_changed, timeout=5000):
        pass
    qtbot.waitUntil(lambda: bool(emitted) and not emitted[-1].busy, timeout=5000)
    assert 1 <= len(emitted) < 500
    assert emitted[-1]["io"].finished == 500


def test_lifecycle_signals(manager: WorkerManager, qtbot: Any) -> None:
    submitted: list[Any] = []
    started: list[Any] = []
    finished: list[Any] = []
    manager.task_submitted.connect(submitted.append)
    manager.task_started.connect(started.append)
    manager.task_finished.connect(finished.append)
    handle = manager.submit(int, "3")
    assert manager.wait_for_done(5)
    assert submitted == started == finished == [handle]


def test_cancel_all(manager: WorkerManager, gate: Gate) -> None:
    handles = [manager.submit(gate.wait) for _ in range(20)]
    assert manager.cancel_all() == 20
    gate.open()
    assert manager.wait_for_done(5)
    assert all(h.state is TaskState.CANCELLED for h in handles)


def test_shutdown_cancels_reports_stuck_and_refuses_new_work(qapp: Any, make_gate: Any) -> None:
    started, release = make_gate(), make_gate()
    manager = WorkerManager(pools={"io": 1})

    def stuck(ctx: TaskContext) -> None:
        started.open()
        release.wait()

    running = manager.submit(stuck)
    queued = manager.submit(int, "1")
    events = record(queued)
    started.wait()
    report = manager.shutdown(timeout=0.05)
    assert report.cancelled == 2
    assert report.still_running == (
        "test_shutdown_cancels_reports_stuck_and_refuses_new_work.<locals>.stuck",
    )
    assert not report.clean
    assert events == ["cancelled", "finished"]  # delivered before shutdown returned
    assert running.state is TaskState.CANCELLED
    with pytest.raises(ManagerShutdownError, match="shut down"):
        manager.submit(int, "1")
    assert manager.shutdown() is report  # idempotent
    release.open()
    for thread in manager.threads():
        thread.join(5)
    assert manager.threads() == []


def test_shutdown_without_cancel_pending_lets_work_finish(qapp: Any) -> None:
    manager = WorkerManager(pools={"io": 1})
    handles = [manager.submit(int, str(i)) for i in range(50)]
    report = manager.shutdown(timeout=10, cancel_pending=False)
    assert report.clean
    assert report.cancelled == 0
    assert [h.result(0) for h in handles] == list(range(50))


def test_about_to_quit_leaves_the_manager_usable(qapp: Any) -> None:
    # aboutToQuit comes each time the event loop returns (every qasync
    # run_until_complete): the application's own handlers may still need the manager.
    with WorkerManager() as manager:
        qapp.aboutToQuit.emit()
        assert wait_for_handle(manager.submit(int, "7")) == 7


def test_the_manager_shuts_down_at_interpreter_exit_and_with_the_application() -> None:
    script = textwrap.dedent(
        """
        import sys, threading
        from PySide6.QtWidgets import QApplication
        from casare_workers import TaskContext, WorkerManager
        app = QApplication([])
        manager = WorkerManager(shutdown_timeout=5.0)
        started = threading.Event()
        def cooperative(ctx: TaskContext) -> None:
            started.set()
            while not ctx.wait(30):
                pass
            print("task saw cancel", flush=True)
        manager.submit(cooperative)
        assert started.wait(10)
        if sys.argv[1] == "destroy":
            app.shutdown()  # the application object is destroyed now
        print("end of script", flush=True)
        """
    )
    for how in ("exit", "destroy"):
        result = subprocess.run(
            [sys.executable, "-c", script, how],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "task saw cancel" in lines, (how, result.stdout, result.stderr)
        if how == "destroy":  # cancelled by the application's death, before the end
            assert lines.index("task saw cancel") < lines.index("end of script")
        assert "Traceback" not in result.stderr, result.stderr


def test_submit_from_many_threads(manager: WorkerManager) -> None:
    barrier = threading.Barrier(8, timeout=5)
    handles: list[Any] = []
    lock = threading.Lock()

    def submitter(n: int) -> None:
        barrier.wait()
        mine = [manager.submit(int, str(n * 100 + i)) for i in range(100)]
        with lock:
            handles.extend(mine)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert manager.wait_for_done(10)
    assert sorted(h.result(0) for h in handles) == list(range(800))


def test_manager_needs_gui_thread(qapp: Any) -> None:
    errors: list[BaseException] = []

    def make() -> None:
        try:
            WorkerManager()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=make)
    t.start()
    t.join(5)
    assert errors
    assert "GUI thread" in str(errors[0])


def test_slots_closing_over_the_handle_do_not_leak_it(manager: WorkerManager, qtbot: Any) -> None:
    import gc
    import weakref

    seen: list[int] = []

    def submit_one() -> weakref.ref[Any]:
        handle = manager.submit(int, "5")
        handle.signals.result.connect(lambda value: seen.append(handle.id + value))
        handle.signals.finished.connect(lambda: seen.append(handle.id))
        return weakref.ref(handle)

    refs = [submit_one() for _ in range(20)]
    assert manager.wait_for_done(5)
    assert len(seen) == 40
    # A worker thread lets go of the task it ran just after settling it, possibly after
    # the delivery: wait until no thread holds one.
    qtbot.waitUntil(lambda: manager.statistics()["io"].busy == 0, timeout=5000)
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_call_in_gui_thread_from_a_qthread(manager: WorkerManager, qtbot: Any) -> None:
    results: list[bool] = []

    class Probe(QThread):
        def run(self) -> None:
            results.append(manager.call_in_gui_thread(manager.engine.is_gui_thread).result(5))

    probe = Probe()
    with qtbot.waitSignal(probe.finished, timeout=5000):
        probe.start()
    assert probe.wait(5000)
    assert results == [True]


def test_default_manager_is_one_per_process_until_shut_down(qapp: Any) -> None:
    from casare_workers import default_manager, set_default_manager

    set_default_manager(None)
    first = default_manager()
    try:
        assert default_manager() is first
        first.shutdown()
        second = default_manager()  # a shut-down default is replaced
        assert second is not first
        second.shutdown()
    finally:
        set_default_manager(None)


def test_cancel_can_be_connected_to_a_button(
    manager: WorkerManager, gate: Gate, qtbot: Any
) -> None:
    from PySide6.QtWidgets import QPushButton

    button = QPushButton("Cancel")
    qtbot.addWidget(button)
    handle = manager.submit(gate.wait)
    button.clicked.connect(handle.cancel)
    button.click()
    assert handle.state is TaskState.CANCELLED
    assert handle.cancel_reason == "cancelled"
    gate.open()
    assert manager.wait_for_done(5)


def test_a_shut_down_manager_is_freed_by_reference_counting(qapp: Any, no_cyclic_gc: None) -> None:
    # PySide6's QMetaMethod.fromSignal(obj.signal) leaks a reference to obj: the manager
    # must not use it, or no manager would ever be freed.
    manager = WorkerManager()
    manager.task_started.connect(lambda _t: None)
    assert wait_for_handle(manager.submit(int, "1")) == 1
    manager.shutdown(5)
    ref = weakref.ref(manager)
    del manager
    assert ref() is None


@pytest.mark.parametrize("warm", [False, True], ids=["no thread yet", "threads running"])
def test_submit_from_an_atexit_hook_is_refused_cleanly(warm: bool) -> None:
    """As concurrent.futures refuses it: nothing may start while the interpreter exits."""
    script = textwrap.dedent(
        f"""
        import atexit
        from PySide6.QtCore import QCoreApplication
        from casare_workers import WorkerManager, default_manager

        def attempt(what, make):
            try:
                make().submit(print, "ran during exit", flush=True)
                print(what, "accepted", flush=True)
            except Exception as exc:
                print(what, "refused", type(exc).__name__, exc, flush=True)

        def late():
            attempt("existing", lambda: manager)
            attempt("new", WorkerManager)
            attempt("default", default_manager)

        app = QCoreApplication([])
        manager = WorkerManager()
        if {warm}:
            manager.submit(int, "1")
            manager.wait_for_done(5)
        atexit.register(late)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [
        ["existing", "refused"],
        ["new", "refused"],
        ["default", "refused"],
    ], done.stdout + done.stderr
    for line in lines:
        assert "ManagerShutdownError" in line
        assert "the interpreter is exiting" in line
    assert "Traceback" not in done.stderr


def test_ended_tasks_with_a_timeout_leave_nothing_in_the_watchdog(manager: WorkerManager) -> None:
    """A timeout's entry goes when its task ends, not only at its (far) deadline."""
    handles = [manager.options(timeout=3600).submit(int, "1") for _ in range(1000)]
    assert manager.wait_for_done(30)
    assert all(h.result(0) == 1 for h in handles)
    assert manager._core._watchdog._heap == []


# -- QObject results ----------------------------------------------------------------------------


def _make_timer() -> QTimer:
    timer = QTimer()  # made on the worker thread, with that thread's affinity
    timer.setSingleShot(True)
    timer.setInterval(0)
    return timer


def test_qobject_result_made_on_a_worker_thread_arrives_on_the_gui_thread(
    manager: WorkerManager, qtbot: Any
) -> None:
    timer = wait_for_handle(manager.submit(_make_timer))
    assert timer.thread() == QThread.currentThread()  # moved before the worker let go
    parent = QObject()
    timer.setParent(parent)  # no "Cannot set parent, new parent is in a different thread"
    with qtbot.waitSignal(timer.timeout, timeout=5000):
        timer.start()  # no "Timers cannot be started from another thread"


def test_qobject_result_with_a_parent_fails_the_task_clearly(manager: WorkerManager) -> None:
    kept: list[QObject] = []

    def make_child() -> QObject:
        parent = QObject()
        kept.append(parent)
        return QObject(parent)

    with pytest.raises(TypeError, match="has a parent"):
        wait_for_handle(manager.submit(make_child))


def test_the_first_manager_an_application_creates_is_the_default(qapp: Any, qtbot: Any) -> None:
    # README and guide say manager = WorkerManager(), longjobs.md LongJob(fn).start():
    # the job used to land on a second, invisible manager that survived the first's
    # shutdown.
    from casare_workers import LongJob, default_manager, set_default_manager

    set_default_manager(None)
    app_manager = WorkerManager()
    library_manager = WorkerManager(default=False)
    second = WorkerManager()
    try:
        assert default_manager() is app_manager
        job: LongJob[int] = LongJob(lambda: 42)
        job.start()
        assert job in app_manager.live_jobs()
        with qtbot.waitSignal(job.result, timeout=5000) as blocker:
            pass
        assert blocker.args == [42]
        qtbot.waitUntil(app_manager.is_idle, timeout=5000)
        assert app_manager.statistics().jobs.succeeded == 1
        assert second.statistics().jobs.started == 0
        app_manager.shutdown()
        third = WorkerManager()  # the default was shut down: the next manager takes over
        assert default_manager() is third
        third.shutdown()
    finally:
        for manager in (app_manager, library_manager, second):
            manager.shutdown()
        set_default_manager(None)


def test_owner_window_closed_cancels_its_tasks(
    manager: WorkerManager, qtbot: Any, make_gate: Any
) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    child = QWidget(window)  # owner= a widget inside the window: the same rule
    window.show()
    gate, running_gate = make_gate(), make_gate()
    seen: list[bool] = []

    def job(ctx: TaskContext) -> str:
        running_gate.open()
        ctx.wait(10)
        seen.append(ctx.cancelled)
        return "late"

    running = manager.options(owner=child).submit(job)
    waiting = manager.options(owner=child, pool="background").submit(gate.wait)
    events = record(running)
    running_gate.wait()
    window.hide()  # hiding (to a tray) is not closing
    qapp_events(qtbot)
    assert not running.done()
    window.show()
    window.close()
    qtbot.waitUntil(lambda: "finished" in events, timeout=5000)
    assert events[-2:] == ["cancelled", "finished"]  # the owner lives: it is told
    assert running.cancel_reason == "window closed"
    assert waiting.cancelled()
    qtbot.waitUntil(lambda: seen == [True], timeout=5000)
    gate.open()
    assert manager.wait_for_done(5)
    after = manager.options(owner=child).submit(abs, -1)  # a reopened window works again
    assert wait_for_handle(after) == 1


def qapp_events(qtbot: Any) -> None:
    """Let the event loop run once (posted events, zero timers)."""
    qtbot.wait(0)


def test_key_policy_join_runs_one_request_for_identical_callers(
    manager: WorkerManager, gate: Gate, qtbot: Any
) -> None:
    # A refresh storm: key= alone supersedes (cancel the old, start the new), so two
    # identical uninterruptible requests ran at once.  Single flight joins them.
    runs: list[str] = []

    def fetch_models(provider: str) -> list[str]:
        runs.append(provider)
        gate.wait()
        return [f"{provider}-large", f"{provider}-small"]

    panel = QObject()
    opts = manager.options(owner=panel, key="models", key_policy="join")
    first = opts.submit(fetch_models, "acme")
    shown: list[list[str]] = []
    first.then(shown.append)
    qtbot.waitUntil(lambda: runs == ["acme"], timeout=5000)
    second = opts.submit(fetch_models, "acme")
    assert second is first  # joined: nothing new runs
    second.then(shown.append)
    second_panel = QObject()
    elsewhere = manager.options(owner=second_panel, key="models", key_policy="join")
    other_panel = elsewhere.submit(lambda: ["other"])  # keys are per owner
    assert other_panel is not first
    gate.open()
    assert wait_for_handle(first) == ["acme-large", "acme-small"]
    assert runs == ["acme"]
    assert shown == [["acme-large", "acme-small"]] * 2
    again = opts.submit(fetch_models, "acme")  # the first has ended: a new request runs
    assert again is not first
    assert wait_for_handle(again) == ["acme-large", "acme-small"]
    assert runs == ["acme", "acme"]
    assert manager.wait_for_done(5)


def test_key_policy_join_from_many_threads_at_once_runs_once(
    manager: WorkerManager, gate: Gate
) -> None:
    runs: list[int] = []
    opts = manager.options(key="quota", key_policy="join")
    barrier = threading.Barrier(8, timeout=10)
    handles: list[Any] = []

    def quota() -> None:
        runs.append(1)
        gate.wait()

    def request() -> None:
        barrier.wait()
        handles.append(opts.submit(quota))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(handles) == 8
    assert len({id(h) for h in handles}) == 1  # every caller holds the one in flight
    gate.open()
    assert manager.wait_for_done(5)
    assert runs == [1]


def test_key_policy_is_checked_when_the_options_are_made(manager: WorkerManager) -> None:
    with pytest.raises(ConfigurationError, match="key_policy must be one of"):
        manager.options(key="k", key_policy="queue")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a key"):
        manager.options(key_policy="join")
    opts = manager.options(key="k", key_policy="join")
    with pytest.raises(ConfigurationError, match=r"applies to submit\(\)"):
        opts.map(abs, [1])
    from casare_workers import Worker

    with pytest.raises(ConfigurationError, match=r"applies to submit\(\)"):
        opts.start(Worker(abs, 1))
