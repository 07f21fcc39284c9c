from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QEventLoop, QObject, QTimer

from casare_workers import (
    BlockingCallError,
    ConfigurationError,
    InitializerError,
    LoopThread,
    TaskTimeoutError,
    ThreadClosedError,
)
from tests.conftest import Gate


@pytest.fixture
def make_thread() -> Iterator[Callable[..., LoopThread]]:
    """Make LoopThreads; each must be closed and ended at teardown.

    A 10 s default call timeout: pytest runs on the GUI thread once a QApplication
    exists, and call() there refuses to block without one.
    """
    made: list[LoopThread] = []

    def make(*args: Any, **kwargs: Any) -> LoopThread:
        kwargs.setdefault("timeout", 10.0)
        lt = LoopThread(*args, **kwargs)
        made.append(lt)
        return lt

    yield make
    for lt in made:
        assert lt.close(timeout=10), f"{lt!r} did not end"
        assert not lt.is_alive()


def test_loopthread_runs_calls_in_order_on_one_thread(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread("ordered")
    seen: list[tuple[int, int]] = []

    def record(i: int) -> int:
        seen.append((i, threading.get_ident()))
        return i * i

    futures = [lt.submit(record, i) for i in range(50)]
    assert [f.result(10) for f in futures] == [i * i for i in range(50)]
    assert [i for i, _ in seen] == list(range(50))
    idents = {ident for _, ident in seen}
    assert idents == {lt.thread.ident}
    assert lt.thread.ident != threading.get_ident()


def test_loopthread_runs_coroutines_on_one_persistent_loop(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread()

    async def which_loop(tag: str) -> tuple[str, asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return tag, asyncio.get_running_loop()

    a = lt.call(which_loop, "function")  # a coroutine function and its arguments
    b = lt.call(which_loop("object"))  # a coroutine object
    c = lt.call(lambda: which_loop("returned"))  # a function returning an awaitable
    assert [a[0], b[0], c[0]] == ["function", "object", "returned"]
    assert a[1] is b[1] is c[1]  # one loop for the thread's whole life
    assert not a[1].is_closed()


def test_loopthread_ordered_calls_run_one_at_a_time(
    make_thread: Callable[..., LoopThread], gate: Gate
) -> None:
    lt = make_thread()
    events: list[str] = []
    a_started = threading.Event()

    async def a() -> None:
        events.append("a start")
        a_started.set()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait)
        events.append("a end")

    async def b() -> None:
        events.append("b")

    fa = lt.submit(a)
    assert a_started.wait(10)
    fb = lt.submit(b)
    with pytest.raises(TimeoutError):
        fb.result(timeout=0.1)  # b waits for a, which is parked on the gate
    gate.open()
    fa.result(10)
    fb.result(10)
    assert events == ["a start", "a end", "b"]


def test_loopthread_unordered_coroutines_run_concurrently(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread(ordered=False)
    box: dict[str, asyncio.Event] = {}
    lt.call(lambda: box.setdefault("event", asyncio.Event()))

    async def waits() -> str:
        await box["event"].wait()
        return "released by the second call"

    async def releases() -> None:
        box["event"].set()

    first = lt.submit(waits)
    lt.submit(releases).result(10)
    assert first.result(10) == "released by the second call"


def test_loopthread_initializer_and_finalizer_run_once_on_the_thread(
    make_thread: Callable[..., LoopThread],
) -> None:
    calls: list[tuple[str, int]] = []
    lt = make_thread(
        "com",
        initializer=lambda tag: calls.append((tag, threading.get_ident())),
        initargs=("init",),
        finalizer=lambda: calls.append(("final", threading.get_ident())),
    )
    lt.ready.result(10)
    lt.call(lambda: calls.append(("call", threading.get_ident())))
    lt.call(lambda: calls.append(("call", threading.get_ident())))
    assert lt.close(10)
    assert [name for name, _ in calls] == ["init", "call", "call", "final"]
    assert {ident for _, ident in calls} == {lt.thread.ident}


def test_loopthread_async_initializer_prepares_loop_bound_state(
    make_thread: Callable[..., LoopThread],
) -> None:
    state: dict[str, asyncio.Queue[int]] = {}

    async def init() -> None:
        state["queue"] = asyncio.Queue()

    async def put(i: int) -> None:
        await state["queue"].put(i)

    async def get() -> int:
        return await state["queue"].get()

    lt = make_thread(initializer=init)
    lt.call(put, 41)
    assert lt.call(get) == 41  # the queue created by the initializer works in calls


def test_loopthread_initializer_failure_fails_every_call_with_the_cause(
    make_thread: Callable[..., LoopThread],
) -> None:
    finalized: list[bool] = []

    def init() -> None:
        raise OSError("CoInitialize failed")

    lt = make_thread(initializer=init, finalizer=lambda: finalized.append(True))
    with pytest.raises(InitializerError, match="CoInitialize failed") as info:
        lt.ready.result(10)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(InitializerError) as again:
        lt.submit(print, "never")
    assert isinstance(again.value.__cause__, OSError)
    assert lt.close(10)
    assert finalized == []  # nothing was initialised, so nothing is undone
    assert lt.closed


def test_loopthread_initializer_and_finalizer_errors_are_logged_once(
    make_thread: Callable[..., LoopThread], caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    def init() -> None:
        gate.wait()  # fails only once a call is queued: the submit below cannot race it
        raise OSError("CoInitialize failed")

    def fini() -> None:
        raise RuntimeError("CoUninitialize failed")

    with caplog.at_level(logging.ERROR, logger="casare_workers"):
        broken = make_thread(initializer=init)
        queued = broken.submit(print, "never")
        gate.open()
        with pytest.raises(InitializerError):
            broken.ready.result(10)
        with pytest.raises(InitializerError):
            queued.result(10)
        with pytest.raises(InitializerError):
            broken.submit(print, "never either")
        assert broken.close(10)
        working = make_thread(finalizer=fini)
        assert working.call(int, "4") == 4  # the other thread was never affected
        assert working.close(10)
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info and r.name == "casare_workers"]
    assert [str(e) for e in logged] == ["CoInitialize failed", "CoUninitialize failed"]


class UnprintableError(Exception):
    """An exception whose ``str()`` itself raises (a broken or hostile ``__str__``)."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_loopthread_initializer_raising_an_unprintable_exception_still_fails_cleanly(
    make_thread: Callable[..., LoopThread], gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    def init() -> None:
        gate.wait()
        raise UnprintableError

    lt = make_thread(initializer=init)
    queued = lt.submit(print, "never")
    gate.open()
    with pytest.raises(InitializerError, match="UnprintableError") as info:
        lt.ready.result(10)
    assert isinstance(info.value.__cause__, UnprintableError)
    with pytest.raises(InitializerError):
        queued.result(10)
    with pytest.raises(InitializerError, match="UnprintableError"):
        lt.submit(print, "never either")
    assert lt.close(10)
    assert "the initializer of LoopThread" in caplog.text  # logged, once


def test_loopthread_calls_queued_before_a_failing_initializer_get_its_error(
    make_thread: Callable[..., LoopThread], gate: Gate
) -> None:
    def init() -> None:
        gate.wait()
        raise ValueError("no license")

    lt = make_thread(initializer=init)
    queued = lt.submit(print, "never")
    gate.open()
    with pytest.raises(InitializerError) as info:
        queued.result(10)
    assert isinstance(info.value.__cause__, ValueError)


def test_loopthread_exceptions_pass_through_unchanged(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread()
    original = LookupError("no such window")

    async def find() -> None:
        raise original

    with pytest.raises(LookupError) as info:
        lt.call(find)
    assert info.value is original
    assert "in find" in "".join(traceback.format_tb(info.value.__traceback__))
    assert lt.call(lambda: "still serving") == "still serving"


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("form", ["coroutine", "function"])
def test_loopthread_base_exceptions_end_only_their_call(
    make_thread: Callable[..., LoopThread], kind: type[BaseException], ordered: bool, form: str
) -> None:
    lt = make_thread(ordered=ordered)
    original = kind(f"from the {form}")

    async def leave_async() -> None:
        raise original

    def leave() -> None:
        raise original

    failing = lt.submit(leave_async if form == "coroutine" else leave)
    queued = lt.submit(int, "7")  # queued behind it: it must still run
    assert failing.exception(10) is original  # held by the Future, not cancelled
    assert queued.result(10) == 7
    assert lt.call(lambda: "still serving") == "still serving"


def test_loopthread_timeout_cancels_a_running_coroutine(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread()
    saw_cancel = threading.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    lt.call(lambda: None)  # the loop is up and idle: the next call starts at once
    with pytest.raises(TaskTimeoutError):
        lt.options(timeout=0.3).call(hang)
    assert saw_cancel.wait(10)
    assert lt.call(lambda: "next call runs") == "next call runs"


def test_loopthread_default_timeout_applies_to_every_call(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread(timeout=0.05)

    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TaskTimeoutError):
        lt.call(hang)
    assert lt.options(timeout=10).call(lambda: 1) == 1


def test_loopthread_timeout_of_a_blocking_function_frees_the_caller(
    make_thread: Callable[..., LoopThread], gate: Gate
) -> None:
    lt = make_thread()
    lt.call(lambda: None)  # the loop is up and idle: the next call starts at once
    with pytest.raises(TaskTimeoutError, match="result will be discarded"):
        lt.options(timeout=0.3).call(lambda: gate.wait() and "late")
    queued = lt.submit(lambda: "after the stuck one")
    gate.open()
    assert queued.result(10) == "after the stuck one"


def test_loopthread_queued_call_past_its_timeout_never_runs(
    make_thread: Callable[..., LoopThread], gate: Gate
) -> None:
    lt = make_thread()
    ran: list[str] = []
    blocker = lt.submit(gate.wait)
    expired = lt.options(timeout=0.05).submit(lambda: ran.append("expired"))
    with pytest.raises(TaskTimeoutError):
        expired.result(10)
    gate.open()
    blocker.result(10)
    lt.call(lambda: ran.append("later"))
    assert ran == ["later"]


def test_loopthread_future_cancel_stops_queued_and_running_coroutines(
    make_thread: Callable[..., LoopThread], gate: Gate
) -> None:
    lt = make_thread()
    running = threading.Event()

    async def hang() -> None:
        running.set()
        await asyncio.Event().wait()

    first = lt.submit(hang)
    queued = lt.submit(lambda: "never")
    assert running.wait(10)
    assert queued.cancel() is True  # queued: removed at once
    assert first.cancel() is False  # running: it stops at its next await ...
    with pytest.raises(CancelledError):
        first.result(10)  # ... and the Future ends cancelled
    assert first.cancelled()
    assert queued.cancelled()


def test_loopthread_close_cancels_queued_calls_and_refuses_new_ones(
    make_thread: Callable[..., LoopThread], gate: Gate
) -> None:
    lt = make_thread()
    running = threading.Event()

    def block() -> bool:
        running.set()
        return gate.wait()

    busy = lt.submit(block)
    queued = lt.submit(lambda: "never")
    assert running.wait(10)
    assert lt.close(timeout=0.05) is False  # the running call blocks the thread
    assert queued.cancelled()
    with pytest.raises(ThreadClosedError, match="create a new one"):
        lt.submit(print)
    gate.open()
    assert busy.result(10) is True
    assert lt.close(10)


def test_loopthread_close_without_cancel_runs_the_queue_first(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread()
    futures = [lt.submit(int, i) for i in range(5)]
    assert lt.close(10, cancel_pending=False)
    assert [f.result(0) for f in futures] == list(range(5))


def test_loopthread_blocking_call_guards(
    make_thread: Callable[..., LoopThread], qapp: Any
) -> None:
    lt = make_thread(timeout=None)
    with pytest.raises(BlockingCallError, match="freeze the window"):
        lt.call(lambda: 1)  # pytest runs on the GUI thread
    assert lt.options(timeout=10).call(lambda: 1) == 1

    def recurse() -> object:
        return lt.options(timeout=10).call(lambda: 2)

    with pytest.raises(BlockingCallError, match="wait for itself"):
        lt.options(timeout=10).call(recurse)
    with pytest.raises(BlockingCallError, match="needs a timeout"):
        lt.close(timeout=None)


def test_loopthread_call_refuses_inside_the_running_gui_loop_even_with_a_timeout(
    make_thread: Callable[..., LoopThread], qapp: Any
) -> None:
    # The docs' own LoopThread("uia", timeout=10): a default timeout used to let call()
    # block the running GUI loop for the whole call.
    lt = make_thread("uia", timeout=10)
    ran = threading.Event()
    outcomes: list[object] = []

    def from_a_qt_slot() -> None:
        try:
            outcomes.append(lt.call(ran.set))
        except BlockingCallError as exc:
            outcomes.append(exc)
        try:
            outcomes.append(lt.options(timeout=5).call(ran.set))
        except BlockingCallError as exc:
            outcomes.append(exc)
        loop.quit()

    loop = QEventLoop()
    QTimer.singleShot(0, from_a_qt_slot)
    QTimer.singleShot(10_000, loop.quit)  # hang guard
    loop.exec()
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert isinstance(outcome, BlockingCallError)
        assert "wrap_future(thread.submit" in str(outcome)
    assert not ran.is_set()  # refused before anything was queued
    # Start-up code (no event loop running yet) may still block with a timeout.
    assert lt.call(lambda: "start-up") == "start-up"


def test_loopthread_call_refuses_inside_a_coroutine_and_await_works(
    make_thread: Callable[..., LoopThread], qasync_loop: Any
) -> None:
    lt = make_thread("uia", timeout=10)

    async def title() -> str:
        return "Notepad"

    async def main() -> str:
        coro = title()
        with pytest.raises(BlockingCallError, match="event loop is running"):
            lt.options(timeout=5).call(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # never "not awaited"
        return await asyncio.wrap_future(lt.submit(title()))

    assert qasync_loop.run(main()) == "Notepad"


def test_loopthread_call_of_a_coroutine_with_a_timeout_argument_says_how(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread("uia")

    async def get_window_title(hwnd: int) -> str:
        return f"window {hwnd}"

    coro = get_window_title(7)
    with pytest.raises(TypeError, match=r"options\(timeout=\.\.\.\)\.call\(coro\)"):
        lt.call(coro, timeout=10)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # no "never awaited"
    assert lt.options(timeout=10).call(get_window_title(7)) == "window 7"


def test_loopthread_owner_destroyed_closes_it(
    make_thread: Callable[..., LoopThread], qapp: Any
) -> None:
    owner = QObject()
    finalized = threading.Event()
    lt = make_thread(owner=owner, finalizer=finalized.set)
    lt.ready.result(10)
    shiboken6.delete(owner)
    assert finalized.wait(10)
    lt.thread.join(10)
    assert not lt.is_alive()
    with pytest.raises(ThreadClosedError):
        lt.submit(print)


def test_loopthread_context_manager_closes(make_thread: Callable[..., LoopThread]) -> None:
    with make_thread() as lt:
        assert lt.call(lambda: 3) == 3
    assert lt.closed
    assert not lt.is_alive()


def test_loopthread_bad_input_is_refused_clearly(make_thread: Callable[..., LoopThread]) -> None:
    with pytest.raises(TypeError, match="initializer must be callable"):
        LoopThread(initializer=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initargs must be a tuple"):
        LoopThread(initializer=print, initargs=[1])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        LoopThread(timeout=-1)
    lt = make_thread()
    with pytest.raises(ConfigurationError, match="timeout"):
        lt.options(timeout=0)
    with pytest.raises(TypeError, match="coroutine function or a coroutine"):
        lt.submit(42)  # type: ignore[call-overload]

    async def coro() -> None:
        pass

    c = coro()
    with pytest.raises(TypeError, match="takes no arguments"):
        lt.submit(c, 1)  # type: ignore[call-overload]
    c.close()


def test_loopthread_ended_calls_with_a_timeout_leave_nothing_in_its_watchdog(
    make_thread: Callable[..., LoopThread],
) -> None:
    lt = make_thread(timeout=3600)
    futures = [lt.submit(int, "1") for _ in range(200)]
    assert [f.result(10) for f in futures] == [1] * 200
    assert lt._watchdog._heap == []
