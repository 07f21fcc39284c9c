"""The qasync bridge, on a real qasync loop over the real QApplication."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import subprocess
import sys
import textwrap
import threading
import traceback
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDialog, QWidget

from casare_workers import (
    BlockingCallError,
    JobContext,
    LongJob,
    NoEventLoopError,
    PoolExecutor,
    TaskContext,
    TaskGroup,
    TaskState,
    UnknownPoolError,
    WorkerManager,
    async_slot,
    asyncify,
    attach_loop,
    open_dialog,
    run_coroutine_sync,
    run_in_loop,
    wait_signal,
)
from casare_workers import _asyncio as bridge
from casare_workers.lowlevel import get_engine
from casare_workers.pytest_plugin import AsyncRunner, assert_gui_thread, assert_worker_thread
from tests.conftest import Gate

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.fixture
def small_manager(qapp: Any) -> Iterator[WorkerManager]:
    """A manager whose io pool has one thread, so tasks can be held in the queue."""
    manager = WorkerManager(pools={"io": 1})
    yield manager
    report = manager.shutdown(5)
    assert report.clean, report


@pytest.fixture
def keep(qapp: Any) -> Iterator[Callable[[Any], Any]]:
    """Register QObjects to delete on the GUI thread at teardown.

    A widget left to Python's cyclic GC (tracebacks and tasks form cycles) could be
    destroyed later on whatever thread runs the collection: a crash in a later test.
    """
    objects: list[QObject] = []

    def keep(obj: Any) -> Any:
        objects.append(obj)
        return obj

    yield keep
    for obj in reversed(objects):
        if shiboken6.isValid(obj):
            shiboken6.delete(obj)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``predicate()`` holds (polling the loop, not sleeping a thread)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a plain thread (not a pool thread) and await it without blocking the loop."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    thread = threading.Thread(target=run, name="plain-thread")
    thread.start()
    try:
        return await asyncio.wrap_future(future)
    finally:
        thread.join(5)


# -- await a handle ------------------------------------------------------------------------


def test_await_handle_returns_result_after_its_signals(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    def work(x: int) -> int:
        assert_worker_thread()
        return x * 2

    events: list[str] = []

    async def main() -> int:
        handle = manager.submit(work, 21)
        handle.signals.result.connect(lambda _: events.append("result"))
        handle.signals.finished.connect(lambda: events.append("finished"))
        value = await handle
        assert_gui_thread()
        events.append("resumed")
        return value

    assert qasync_loop.run(main()) == 42
    assert events == ["result", "finished", "resumed"]


def test_await_of_a_settled_undelivered_handle_resumes_after_its_delivery(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    handle = manager.submit(abs, -3)
    assert handle.wait(5)  # settled on the worker; nothing delivered yet (no events ran)
    events: list[str] = []
    handle.signals.finished.connect(lambda: events.append("finished"))

    async def main() -> int:
        value: int = await handle
        events.append("resumed")
        return value

    assert qasync_loop.run(main()) == 3
    assert events == ["finished", "resumed"]


def test_await_handle_reraises_the_original_exception_with_traceback(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    raised: list[BaseException] = []

    def parse() -> None:
        error = ValueError("bad header")
        raised.append(error)
        raise error

    async def main() -> None:
        await manager.submit(parse)

    with pytest.raises(ValueError, match="bad header") as info:
        qasync_loop.run(main())
    assert info.value is raised[0]  # the same object, not a wrapper
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "parse" in frames  # the worker's frame travelled with it
    assert "main" in frames


def test_await_already_finished_handle_returns_at_once(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    async def main() -> str:
        handle = manager.submit(str.upper, "done")
        await handle
        return await handle  # awaiting again gives the same outcome

    assert qasync_loop.run(main()) == "DONE"


def test_cancelling_the_awaiter_removes_a_queued_task(
    small_manager: WorkerManager, qasync_loop: AsyncRunner, gate: Gate
) -> None:
    ran = threading.Event()

    async def main() -> None:
        blocker = small_manager.submit(gate.wait)
        queued = small_manager.submit(ran.set)
        assert queued.state is TaskState.QUEUED
        waiter = asyncio.ensure_future(_await(queued))
        await asyncio.sleep(0)  # let the waiter reach its await
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter
        assert queued.cancelled()
        gate.open()
        await blocker

    qasync_loop.run(main())
    assert not ran.is_set()


async def _await(handle: Any) -> Any:
    return await handle


def test_cancelling_the_awaiter_cancels_the_running_task(
    manager: WorkerManager, qasync_loop: AsyncRunner, make_gate: Callable[[], Gate]
) -> None:
    started, stopped = make_gate(), make_gate()
    seen: list[bool] = []

    def job(ctx: TaskContext) -> str:
        started.open()
        seen.append(ctx.wait(10))  # True: woken by the cancellation
        stopped.open()
        return "late"

    async def main() -> None:
        handle = manager.submit(job)
        waiter = asyncio.ensure_future(_await(handle))
        await in_thread(started.wait)
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter
        assert handle.state is TaskState.CANCELLED
        await in_thread(stopped.wait)

    qasync_loop.run(main())
    assert seen == [True]


def test_task_cancelled_elsewhere_raises_cancelled_error_in_the_awaiter(
    manager: WorkerManager, qasync_loop: AsyncRunner, gate: Gate
) -> None:
    async def main() -> None:
        handle = manager.submit(gate.wait)
        waiter = asyncio.ensure_future(_await(handle))
        await asyncio.sleep(0)
        handle.cancel(reason="superseded by a newer search")
        with pytest.raises(asyncio.CancelledError, match="superseded by a newer search"):
            await waiter
        gate.open()

    qasync_loop.run(main())
    assert manager.wait_for_done(5)


def test_await_works_from_a_loop_in_another_thread(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    def boom() -> None:
        raise KeyError("nope")

    async def on_its_own_loop() -> tuple[int, str]:
        value = await manager.submit(pow, 2, 10)
        try:
            await manager.submit(boom)
        except KeyError as exc:
            return value, str(exc)
        raise AssertionError("no error")

    async def main() -> tuple[int, str]:
        # A long job's thread with its own loop: stock asyncio, not the GUI loop.
        return await in_thread(lambda: asyncio.run(on_its_own_loop()))  # type: ignore[no-any-return]

    assert qasync_loop.run(main()) == (1024, "'nope'")


def test_await_works_on_a_plain_asyncio_loop_in_the_gui_thread(manager: WorkerManager) -> None:
    # No Qt event loop runs here, so the engine never drains: the waiter must not
    # depend on it.
    async def main() -> int:
        return await manager.submit(abs, -7)

    assert asyncio.run(main()) == 7


def test_gather_and_wait_for_accept_handles(
    manager: WorkerManager, qasync_loop: AsyncRunner, gate: Gate
) -> None:
    async def main() -> list[int]:
        values = await asyncio.gather(*(manager.submit(abs, -i) for i in range(20)))
        slow = manager.submit(gate.wait)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slow, 0.01)
        assert slow.state is TaskState.CANCELLED  # the timeout cancelled the worker
        gate.open()
        return values

    assert qasync_loop.run(main()) == list(range(20))
    assert manager.wait_for_done(5)


# -- map batches ------------------------------------------------------------------------------


def test_await_map_returns_the_list(manager: WorkerManager, qasync_loop: AsyncRunner) -> None:
    async def main() -> list[int]:
        return await manager.map(lambda x: x * x, range(1000))

    assert qasync_loop.run(main()) == [x * x for x in range(1000)]


def test_map_async_iteration_yields_results_as_they_arrive(
    small_manager: WorkerManager, qasync_loop: AsyncRunner, gate: Gate
) -> None:
    def item(x: int) -> int:
        if x == 2:
            gate.wait()  # the third item is held until the first two were yielded
        return x * 10

    async def main() -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        async for pair in small_manager.map(item, range(4), chunksize=1):
            seen.append(pair)
            if len(seen) == 2:
                gate.open()
        return seen

    assert qasync_loop.run(main()) == [(0, 0), (1, 10), (2, 20), (3, 30)]


def test_map_async_iteration_started_late_replays_finished_chunks(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    async def main() -> list[tuple[int, int]]:
        handle = manager.map(abs, range(-500, 0))
        await until(handle.done)
        return [pair async for pair in handle]

    pairs = qasync_loop.run(main())
    assert sorted(pairs) == [(i, 500 - i) for i in range(500)]


def test_map_async_iteration_raises_the_error_after_earlier_results(
    small_manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    seen: list[tuple[int, int]] = []

    async def collect() -> None:
        async for pair in small_manager.map(int, ["1", "2", "three", "4"], chunksize=1):
            seen.append(pair)

    async def main() -> list[tuple[int, int]]:
        with pytest.raises(ValueError, match="three") as info:
            await collect()
        assert any("item 2" in note for note in info.value.__notes__)
        return seen

    assert qasync_loop.run(main()) == [(0, 1), (1, 2)]


def test_cancelling_the_iterating_coroutine_cancels_the_map(
    small_manager: WorkerManager, qasync_loop: AsyncRunner, make_gate: Callable[[], Gate]
) -> None:
    started, release = make_gate(), make_gate()
    ran: list[int] = []

    def item(x: int) -> int:
        ran.append(x)
        started.open()
        release.wait()
        return x

    async def consume(handle: Any) -> None:
        async for _ in handle:
            pass

    async def main() -> None:
        handle = small_manager.map(item, range(100), chunksize=1)
        consumer = asyncio.ensure_future(consume(handle))
        await in_thread(started.wait)
        consumer.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await consumer
        assert handle.state is TaskState.CANCELLED
        release.open()

    qasync_loop.run(main())
    assert small_manager.wait_for_done(5)
    assert ran == [0]  # cancelled between chunks


def test_map_async_iteration_on_a_loop_in_another_thread(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    async def collect() -> list[tuple[int, int]]:
        return [pair async for pair in manager.map(abs, range(-300, 0))]

    async def main() -> list[tuple[int, int]]:
        return await in_thread(lambda: asyncio.run(collect()))  # type: ignore[no-any-return]

    assert sorted(qasync_loop.run(main())) == [(i, 300 - i) for i in range(300)]


# -- long jobs (anything with add_done_callback and a future view) ---------------------------


class StandInJob:
    """The shape a long job exposes: ``add_done_callback(fn)``, ``future``, ``cancel()``."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[str] = concurrent.futures.Future()
        self.cancel_calls = 0

    def add_done_callback(self, fn: Callable[[StandInJob], object]) -> None:
        self.future.add_done_callback(lambda _: fn(self))

    def cancel(self) -> bool:
        self.cancel_calls += 1
        return self.future.cancel()

    def __await__(self) -> Generator[Any, None, str]:
        return bridge.await_job(self)


def test_await_job_settled_on_another_thread(qasync_loop: AsyncRunner) -> None:
    job = StandInJob()

    async def main() -> str:
        waiter = asyncio.ensure_future(_await(job))
        await asyncio.sleep(0)  # the waiter is parked on the job
        await in_thread(lambda: job.future.set_result("migrated"))
        return await waiter  # type: ignore[no-any-return]

    assert qasync_loop.run(main()) == "migrated"


def test_await_job_cancelled_awaiter_cancels_the_job(qasync_loop: AsyncRunner) -> None:
    job = StandInJob()

    async def main() -> None:
        waiter = asyncio.ensure_future(_await(job))
        await asyncio.sleep(0)
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter

    qasync_loop.run(main())
    assert job.cancel_calls == 1
    assert job.future.cancelled()


def test_await_job_failed_and_cancelled_outcomes(qasync_loop: AsyncRunner) -> None:
    failed, cancelled = StandInJob(), StandInJob()
    failed.future.set_exception(OSError("disk full"))
    cancelled.future.cancel()

    async def main() -> None:
        with pytest.raises(OSError, match="disk full"):
            await failed
        with pytest.raises(asyncio.CancelledError, match="was cancelled"):
            await cancelled

    qasync_loop.run(main())


def test_await_a_real_long_job(manager: WorkerManager, qasync_loop: AsyncRunner) -> None:
    class Migrate(LongJob[str]):
        async def work(self, ctx: JobContext) -> str:
            for step in range(3):
                await ctx.acheckpoint()
                ctx.progress(step + 1, 3)
            return "migrated"

    class Broken(LongJob[None]):
        def work(self, ctx: JobContext) -> None:
            raise OSError("disk full")

    async def main() -> str:
        good, bad = Migrate(manager=manager), Broken(manager=manager)
        good.start()
        bad.start()
        with pytest.raises(OSError, match="disk full"):
            await bad
        return await good

    assert qasync_loop.run(main()) == "migrated"


def test_cancelling_the_awaiter_cancels_a_real_long_job(
    manager: WorkerManager, qasync_loop: AsyncRunner, gate: Gate
) -> None:
    class Wait(LongJob[str]):
        def work(self, ctx: JobContext) -> str:
            gate.open()
            while not ctx.cancelled:
                ctx.wait(0.05)
            return "ignored"

    job = Wait(manager=manager)

    async def main() -> None:
        job.start()
        waiter = asyncio.ensure_future(_await(job))
        await in_thread(gate.wait)
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter

    qasync_loop.run(main())
    assert job.cancel_reason is not None
    assert manager.wait_for_done(5)


# -- asyncify ---------------------------------------------------------------------------------


def test_asyncify_runs_on_the_chosen_pool(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    @asyncify(pool="background", manager=manager)
    def crunch(n: int) -> tuple[int, str]:
        return n * n, threading.current_thread().name

    async def main() -> tuple[int, str]:
        return await crunch(12)

    value, thread = qasync_loop.run(main())
    assert value == 144
    assert thread.startswith("casare-background-")
    assert manager.statistics()["background"].succeeded == 1


def test_asyncify_bare_uses_the_default_manager(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    from casare_workers import set_default_manager

    @asyncify
    def where() -> str:
        return threading.current_thread().name

    set_default_manager(manager)
    try:
        assert qasync_loop.run(where()).startswith("casare-io-")
    finally:
        set_default_manager(None)


def test_asyncify_cancel_reaches_the_function(
    manager: WorkerManager, qasync_loop: AsyncRunner, make_gate: Callable[[], Gate]
) -> None:
    started = make_gate()

    @asyncify(manager=manager)
    def download(url: str, *, ctx: TaskContext | None = None) -> str:
        # (keyword-only with a default: type checkers then accept download(url))
        assert ctx is not None
        started.open()
        return "cancelled" if ctx.wait(10) else url

    async def main() -> None:
        call = asyncio.ensure_future(download("https://example.invalid"))
        await in_thread(started.wait)
        call.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await call

    qasync_loop.run(main())
    assert manager.wait_for_done(5)


def test_asyncify_rejects_coroutine_functions_and_unknown_pools(manager: WorkerManager) -> None:
    async def already_async() -> None:
        pass

    with pytest.raises(TypeError, match="already a coroutine function"):
        asyncify(already_async)
    with pytest.raises(UnknownPoolError, match="gpu"):
        asyncify(pool="gpu", manager=manager)


# -- the manager's pool as the loop's default executor ---------------------------------------


def test_attach_loop_makes_to_thread_and_run_in_executor_use_the_pool(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    def where(_: object = None) -> str:
        return threading.current_thread().name

    async def main() -> tuple[str, str]:
        executor = attach_loop(manager=manager)
        assert isinstance(executor, PoolExecutor)
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(where), await loop.run_in_executor(None, where, 1)

    to_thread, in_executor = qasync_loop.run(main())
    assert to_thread.startswith("casare-io-")
    assert in_executor.startswith("casare-io-")
    assert manager.statistics()["io"].succeeded == 2


def test_attach_loop_after_qasync_made_its_executor_keeps_it_alive_and_stops_it(
    manager: WorkerManager, qasync_loop: AsyncRunner, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, abs, -1)  # qasync creates its QThreadExecutor
        with caplog.at_level(logging.WARNING, logger="casare_workers"):
            executor = attach_loop(manager=manager)
        assert executor._replaced is not None  # not garbage-collected with live QThreads
        return await asyncio.to_thread(lambda: threading.current_thread().name)

    assert qasync_loop.run(main()).startswith("casare-io-")
    assert "already had a default executor" in caplog.text


def test_executor_calls_functions_exactly_as_given(manager: WorkerManager) -> None:
    def handler(ctx: str) -> str:  # a third-party "ctx" that is not a TaskContext
        return ctx

    executor = PoolExecutor(manager, "background")
    assert executor.submit(handler, "click-context").result(5) == "click-context"
    assert list(executor.map(abs, [-1, -2])) == [1, 2]
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, 1)


def test_executor_shutdown_is_bounded_and_cancels_stuck_work(
    qapp: Any, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    with WorkerManager(shutdown_timeout=0.05) as manager:
        executor = PoolExecutor(manager)
        stuck = executor.submit(gate.wait)
        with caplog.at_level(logging.WARNING, logger="casare_workers"):
            executor.shutdown(wait=True)  # returns although the function never does
        assert stuck.cancelled()
        assert "still running" in caplog.text
        gate.open()


def test_executor_shutdown_cancel_futures_removes_queued_work(
    small_manager: WorkerManager, gate: Gate
) -> None:
    executor = PoolExecutor(small_manager)
    blocker = executor.submit(gate.wait)
    queued = executor.submit(abs, -1)
    executor.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    gate.open()
    assert blocker.result(5) is True


def test_executor_rejects_unknown_pool(manager: WorkerManager) -> None:
    with pytest.raises(UnknownPoolError, match="gpu"):
        PoolExecutor(manager, "gpu")


@pytest.mark.slow
def test_app_with_a_stuck_to_thread_job_exits_cleanly(tmp_path: Any) -> None:
    # A real application process: qasync loop, attach_loop, a to_thread call that never
    # returns, then quit.  With qasync's own executor this hangs at loop close (a QThread
    # joined without limit) or aborts; here it must exit promptly and quietly.
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys, threading
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
            from PySide6.QtWidgets import QApplication
            import qasync
            from casare_workers import WorkerManager, attach_loop

            app = QApplication(sys.argv)
            manager = WorkerManager(shutdown_timeout=0.2)
            never = threading.Event()

            async def main():
                attach_loop(asyncio.get_running_loop(), manager)
                asyncio.ensure_future(asyncio.to_thread(never.wait))  # stuck forever
                await asyncio.sleep(0.05)
                app.quit()

            loop = qasync.QEventLoop(app)
            with loop:
                loop.run_until_complete(main())
            print("exited cleanly")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "exited cleanly" in result.stdout
    assert "QThread: Destroyed" not in result.stderr


def test_core_imports_without_qasync() -> None:
    code = (
        "import sys; sys.modules['qasync'] = None\n"  # any import of qasync would fail
        "import casare_workers\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- from worker threads to the GUI loop --------------------------------------------------------


def test_run_in_loop_runs_functions_and_coroutines_on_the_gui_loop(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    async def loop_work(x: int) -> tuple[int, bool]:
        await asyncio.sleep(0)
        return x + 1, asyncio.get_running_loop() is qasync_loop.loop

    def on_gui() -> bool:
        return get_engine().is_gui_thread()

    def worker() -> tuple[Any, ...]:
        assert_worker_thread()
        coro_result = run_in_loop(loop_work(1)).result(5)
        fn_result = run_in_loop(on_gui).result(5)
        async_fn_result = run_in_loop(loop_work, 10).result(5)
        return coro_result, fn_result, async_fn_result

    async def main() -> tuple[Any, ...]:
        return await manager.submit(worker)

    assert qasync_loop.run(main()) == ((2, True), True, (11, True))


def test_run_in_loop_from_a_plain_thread(qasync_loop: AsyncRunner) -> None:
    async def main() -> str:
        return await in_thread(lambda: run_in_loop(str.upper, "plain").result(5))  # type: ignore[no-any-return]

    assert qasync_loop.run(main()) == "PLAIN"


def test_run_in_loop_result_on_the_loop_thread_refuses_instead_of_deadlocking(
    qasync_loop: AsyncRunner,
) -> None:
    async def main() -> int:
        future = run_in_loop(asyncio.sleep(0, 5))
        with pytest.raises(BlockingCallError, match="deadlock"):
            future.result(timeout=2)  # a timeout does not make it safe: the loop is stuck
        return await asyncio.wrap_future(future)

    assert qasync_loop.run(main()) == 5


def test_cancelling_the_run_in_loop_future_cancels_the_coroutine(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    started, outcome = asyncio.Event(), []

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async def main() -> None:
        future = await in_thread(lambda: run_in_loop(forever()))
        await started.wait()
        assert future.cancel()
        await until(lambda: outcome == ["cancelled"])

    qasync_loop.run(main())


def test_run_in_loop_coroutine_without_a_running_gui_loop_fails_the_future(
    qapp: Any, qtbot: Any
) -> None:
    async def never_awaited() -> None:
        pass

    future = run_in_loop(never_awaited())
    qtbot.waitUntil(future.done, timeout=5000)
    with pytest.raises(NoEventLoopError, match="qasync"):
        future.result(0)


def test_run_in_loop_on_a_closed_loop_says_so(qapp: Any) -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(NoEventLoopError, match="closed"):
        run_in_loop(abs, -1, loop=loop)


def test_run_in_loop_rejects_bad_arguments(qasync_loop: AsyncRunner) -> None:
    async def co() -> None:
        pass

    with pytest.raises(TypeError, match="takes no arguments"):
        run_in_loop(co(), 1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="coroutine object or a callable"):
        run_in_loop(42)  # type: ignore[call-overload]


# -- sync -> async --------------------------------------------------------------------------------


def test_run_coroutine_sync_on_a_worker_uses_the_gui_loop_every_time(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    async def read_title(n: int) -> tuple[int, int, bool]:
        await asyncio.sleep(0)
        return n, id(asyncio.get_running_loop()), get_engine().is_gui_thread()

    def sync_api() -> list[tuple[int, int, bool]]:
        return [run_coroutine_sync(read_title(n), timeout=5) for n in range(3)]

    async def main() -> list[tuple[int, int, bool]]:
        attach_loop(manager=manager)
        return await manager.submit(sync_api)

    results = qasync_loop.run(main())
    assert [n for n, _, _ in results] == [0, 1, 2]
    assert {loop for _, loop, _ in results} == {id(qasync_loop.loop)}  # no loop per call
    assert all(on_gui for _, _, on_gui in results)


def test_run_coroutine_sync_passes_the_coroutines_exception_unchanged(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    class ProviderError(RuntimeError):
        pass

    async def fetch() -> None:
        await asyncio.sleep(0)
        raise ProviderError("quota exceeded")

    async def main() -> None:
        await manager.submit(run_coroutine_sync, fetch(), 5)

    with pytest.raises(ProviderError, match="quota exceeded"):
        qasync_loop.run(main())


def test_run_coroutine_sync_refuses_on_the_running_gui_loop(qasync_loop: AsyncRunner) -> None:
    ran: list[str] = []

    async def coroutine() -> None:
        ran.append("ran")

    def sync_helper() -> None:
        run_coroutine_sync(coroutine(), timeout=2)

    async def main() -> None:
        with pytest.raises(BlockingCallError, match="await"):
            sync_helper()  # a sync function called from a coroutine, as in the seed app

    qasync_loop.run(main())
    assert ran == []  # refused before running anything (and no "never awaited" warning)


def test_run_coroutine_sync_refuses_inside_a_running_qt_event_loop(
    qasync_loop: AsyncRunner, qtbot: Any, keep: Callable[[Any], Any]
) -> None:
    errors: list[BaseException] = []

    async def coroutine() -> None:
        pass

    def from_a_timer() -> None:  # plain Qt callback: no asyncio loop, but Qt's is running
        try:
            run_coroutine_sync(coroutine(), timeout=2)
        except BaseException as exc:
            errors.append(exc)

    timer = keep(QTimer())
    timer.setSingleShot(True)
    timer.timeout.connect(from_a_timer)
    with qtbot.waitSignal(timer.timeout, timeout=5000):
        timer.start(0)
    assert len(errors) == 1
    assert isinstance(errors[0], BlockingCallError)


def test_run_coroutine_sync_times_out_and_cancels(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    outcome: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async def main() -> None:
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.05 s"):
            await manager.submit(run_coroutine_sync, slow(), 0.05)
        await until(lambda: outcome == ["cancelled"])

    qasync_loop.run(main())


def test_run_coroutine_sync_before_the_loop_runs_uses_that_loop(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    async def startup() -> bool:
        return asyncio.get_running_loop() is qasync_loop.loop

    executor = attach_loop(qasync_loop.loop, manager)
    assert run_coroutine_sync(startup()) is True
    executor.shutdown()


# -- async slots --------------------------------------------------------------------------------


class Panel(QWidget):
    changed = Signal(bool)

    def __init__(self, manager: WorkerManager) -> None:
        super().__init__()
        self.manager = manager
        self.log: list[str] = []
        self.started = asyncio.Event()

    @async_slot
    async def refresh(self) -> str:
        self.log.append("refresh")
        return await self.manager.submit(str.upper, "fresh")

    @async_slot
    async def wait_forever(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.log.append("cancelled")
            raise

    @async_slot
    async def fail(self) -> None:
        raise LookupError("no such provider")

    @async_slot(bool)
    async def toggled(self, on: bool) -> None:
        self.log.append(f"toggled {on}")


class IgnoresClose(Panel):
    def closeEvent(self, event: QCloseEvent) -> None:
        event.ignore()


class Prompt(QDialog):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.started = asyncio.Event()

    @async_slot
    async def wait_forever(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.log.append("cancelled")
            raise


def test_async_slot_returns_its_task_and_drops_extra_signal_args(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    panel = keep(Panel(manager))

    async def main() -> str:
        task = panel.refresh()
        assert isinstance(task, asyncio.Task)
        panel.changed.connect(panel.refresh)
        panel.changed.emit(True)  # refresh() takes no argument: it is dropped
        await until(lambda: panel.log == ["refresh", "refresh"])
        return await task  # type: ignore[no-any-return]

    assert qasync_loop.run(main()) == "FRESH"
    qasync_loop.run(until(lambda: manager.is_idle()))


def test_async_slot_with_qt_types_receives_the_signal_arguments(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    panel = keep(Panel(manager))
    panel.changed.connect(panel.toggled)

    async def main() -> None:
        panel.changed.emit(True)
        await until(lambda: panel.log == ["toggled True"])

    qasync_loop.run(main())


def test_async_slot_called_from_a_worker_thread_runs_on_the_gui_loop(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    panel = keep(Panel(manager))

    def worker() -> str:
        future = panel.refresh()  # no loop in this thread: started on the GUI loop
        assert isinstance(future, concurrent.futures.Future)
        return future.result(5)  # type: ignore[no-any-return]

    async def main() -> str:
        return await manager.submit(worker)

    assert qasync_loop.run(main()) == "FRESH"
    assert panel.log == ["refresh"]


def test_async_slot_exception_goes_to_sys_excepthook(
    manager: WorkerManager, qasync_loop: AsyncRunner, qtbot: Any, keep: Callable[[Any], Any]
) -> None:
    panel = keep(Panel(manager))

    async def main() -> None:
        task = panel.fail()
        with pytest.raises(LookupError):
            await task
        await asyncio.sleep(0)  # the done callback runs

    with qtbot.captureExceptions() as exceptions:  # pytest-qt's sys.excepthook
        qasync_loop.run(main())
    assert len(exceptions) == 1
    assert exceptions[0][0] is LookupError


def test_async_slot_on_error_hook_and_cancellation_is_not_an_error(
    qasync_loop: AsyncRunner,
) -> None:
    reports: list[type[BaseException]] = []

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        reports.append(kind)

    @async_slot(on_error=hook)
    async def fails() -> None:
        raise OSError("unplugged")

    @async_slot(on_error=hook)
    async def sleeps() -> None:
        await asyncio.sleep(60)

    async def main() -> None:
        failing, sleeping = fails(), sleeps()
        await asyncio.sleep(0)
        sleeping.cancel()
        await asyncio.wait([failing, sleeping])
        await asyncio.sleep(0)

    qasync_loop.run(main())
    assert reports == [OSError]  # the cancelled task was not reported


def test_async_slot_tasks_are_cancelled_when_the_widget_is_destroyed(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    panel = keep(Panel(manager))
    log = panel.log

    async def main() -> None:
        task = panel.wait_forever()
        await panel.started.wait()
        panel.deleteLater()
        with pytest.raises(asyncio.CancelledError, match="destroyed"):
            await task

    qasync_loop.run(main())
    assert log == ["cancelled"]


def test_async_slot_tasks_are_cancelled_when_the_window_is_closed(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    panel = keep(Panel(manager))

    async def main() -> None:
        panel.show()
        task = panel.wait_forever()
        await panel.started.wait()
        panel.close()
        with pytest.raises(asyncio.CancelledError, match="closed"):
            await task

    qasync_loop.run(main())
    assert panel.log == ["cancelled"]


def test_async_slot_tasks_survive_an_ignored_close(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    panel = keep(IgnoresClose(manager))

    async def main() -> None:
        panel.show()
        task = panel.wait_forever()
        await panel.started.wait()
        assert panel.close() is False
        for _ in range(5):  # several loop turns: the deferred check has run
            await asyncio.sleep(0.001)
        assert not task.done()
        task.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await task

    qasync_loop.run(main())


def test_async_slot_tasks_of_a_child_widget_end_when_its_dialog_is_accepted(
    manager: WorkerManager, qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    dialog = keep(QDialog())
    panel = keep(Panel(manager))
    panel.setParent(dialog)

    async def main() -> None:
        dialog.open()
        task = panel.wait_forever()
        await panel.started.wait()
        dialog.accept()  # accept() hides without a close event
        with pytest.raises(asyncio.CancelledError, match="dialog finished"):
            await task

    qasync_loop.run(main())
    assert panel.log == ["cancelled"]


def test_async_slot_without_a_running_loop_says_how_to_start_one(
    qapp: Any, keep: Callable[[Any], Any]
) -> None:
    prompt = keep(Prompt())
    with pytest.raises(NoEventLoopError, match="start the qasync loop"):
        prompt.wait_forever()


def test_async_slot_rejects_plain_functions() -> None:
    def plain() -> None:
        pass

    with pytest.raises(TypeError, match="'async def'"):
        async_slot(plain)


# -- signals and dialogs ------------------------------------------------------------------------


class Emitter(QObject):
    ready = Signal(int, str)


def test_wait_signal_returns_the_arguments_from_any_thread(
    qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    emitter = keep(Emitter())

    async def main() -> tuple[Any, ...]:
        waiting = asyncio.ensure_future(wait_signal(emitter.ready, timeout=5))
        await asyncio.sleep(0)
        await in_thread(lambda: emitter.ready.emit(7, "seven"))
        return await waiting

    assert qasync_loop.run(main()) == (7, "seven")
    assert emitter.receivers("2ready(int,QString)") == 0  # disconnected afterwards


def test_wait_signal_times_out_and_disconnects(
    qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    emitter = keep(Emitter())

    async def main() -> None:
        with pytest.raises(TimeoutError, match=r"not emitted within 0\.01 s"):
            await wait_signal(emitter.ready, timeout=0.01)

    qasync_loop.run(main())
    assert emitter.receivers("2ready(int,QString)") == 0


def test_open_dialog_awaits_the_outcome_without_a_nested_loop(
    qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    dialog = keep(QDialog())
    checks: list[bool] = []

    async def answer(waiter: asyncio.Task[int]) -> None:
        await until(dialog.isVisible)
        # The awaiting coroutine is suspended, not running underneath us in a nested
        # exec(): nothing re-enters it.
        checks.append(waiter.get_coro().cr_running)  # type: ignore[union-attr]
        dialog.accept()

    async def main() -> int:
        waiter = asyncio.ensure_future(open_dialog(dialog, timeout=5))
        await answer(waiter)
        return await waiter

    assert qasync_loop.run(main()) == QDialog.DialogCode.Accepted.value
    assert checks == [False]


def test_open_dialog_cancelled_or_timed_out_rejects_the_dialog(
    qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    dialog = keep(QDialog())
    results: list[int] = []
    dialog.finished.connect(results.append)

    async def main() -> None:
        waiter = asyncio.ensure_future(open_dialog(dialog))
        await until(dialog.isVisible)
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter
        with pytest.raises(TimeoutError, match="not answered"):
            await open_dialog(dialog, timeout=0.01)

    qasync_loop.run(main())
    assert results == [0, 0]
    assert not dialog.isVisible()


def test_open_dialog_destroyed_counts_as_rejected(
    qasync_loop: AsyncRunner, keep: Callable[[Any], Any]
) -> None:
    dialog = keep(QDialog())

    async def main() -> int:
        waiter = asyncio.ensure_future(open_dialog(dialog))
        await until(dialog.isVisible)
        shiboken6.delete(dialog)
        return await waiter

    assert qasync_loop.run(main()) == 0


# -- contextvars ----------------------------------------------------------------------------


def test_contextvars_travel_to_workers_and_back(
    manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    def seen_by_worker() -> str:
        return request_id.get()

    async def seen_by_loop() -> str:
        return request_id.get()

    def worker_calls_back() -> tuple[str, str, str]:
        request_id.set("worker-7")
        return (
            run_in_loop(seen_by_loop()).result(5),
            run_coroutine_sync(seen_by_loop(), timeout=5),
            run_in_loop(request_id.get).result(5),
        )

    @asyncify(manager=manager)
    def wrapped() -> str:
        return request_id.get()

    async def main() -> tuple[Any, ...]:
        request_id.set("req-42")
        mapped = await manager.map(lambda _: request_id.get(), range(50))
        return (
            await manager.submit(seen_by_worker),
            await wrapped(),
            set(mapped),
            await asyncio.to_thread(seen_by_worker),
            await manager.submit(worker_calls_back),
            request_id.get(),  # the worker's set() did not leak back
        )

    result = qasync_loop.run(main())
    assert result == (
        "req-42",
        "req-42",
        {"req-42"},
        "req-42",
        ("worker-7", "worker-7", "worker-7"),
        "req-42",
    )


def test_a_tasks_context_changes_stay_in_that_task(
    small_manager: WorkerManager, qasync_loop: AsyncRunner
) -> None:
    def sets() -> str:
        request_id.set("changed by a task")
        return request_id.get()

    async def main() -> tuple[str, str]:
        # One worker thread runs both: the second must not see the first one's set().
        return await small_manager.submit(sets), await small_manager.submit(request_id.get)

    assert qasync_loop.run(main()) == ("changed by a task", "unset")


# -- task groups ----------------------------------------------------------------------------


def test_task_group_collects_results(manager: WorkerManager, qasync_loop: AsyncRunner) -> None:
    async def main() -> tuple[int, str]:
        async with TaskGroup(manager) as group:
            number = group.submit(pow, 3, 4)
            text = group.create_task(_await(manager.submit(str.lower, "OK")))
        return number.result(), text.result()

    assert qasync_loop.run(main()) == (81, "ok")


def test_task_group_first_error_cancels_the_other_workers(
    manager: WorkerManager, qasync_loop: AsyncRunner, make_gate: Callable[[], Gate]
) -> None:
    started = make_gate()
    saw_cancel: list[bool] = []
    returned = make_gate()

    def slow(ctx: TaskContext) -> None:
        started.open()
        saw_cancel.append(ctx.wait(10))
        returned.open()  # a cancelled task is delivered before its function returns

    def broken() -> None:
        started.wait()
        raise ConnectionError("provider down")

    async def main() -> None:
        async with TaskGroup(manager) as group:
            sibling = group.submit(slow)
            group.submit(broken)
        raise AssertionError(f"no error raised; sibling {sibling}")

    with pytest.raises(ExceptionGroup) as info:
        qasync_loop.run(main())
    assert info.group_contains(ConnectionError, match="provider down")
    assert manager.wait_for_done(5)
    returned.wait()
    assert saw_cancel == [True]


def test_task_group_is_cancelled_when_its_owner_is_destroyed(
    manager: WorkerManager,
    qasync_loop: AsyncRunner,
    make_gate: Callable[[], Gate],
    keep: Callable[[Any], Any],
) -> None:
    owner = keep(QWidget())
    started = make_gate()
    returned = make_gate()
    saw_cancel: list[bool] = []
    after_block: list[str] = []

    def slow(ctx: TaskContext) -> None:
        started.open()
        saw_cancel.append(ctx.wait(10))
        returned.open()  # a cancelled task is delivered before its function returns

    async def body() -> None:
        async with TaskGroup(manager, owner=owner) as group:
            group.submit(slow)
            await asyncio.sleep(60)
        after_block.append("ran")  # must not run: the owner is gone

    async def main() -> None:
        task = asyncio.ensure_future(body())
        await in_thread(started.wait)
        owner.deleteLater()
        with pytest.raises(asyncio.CancelledError, match="owner was destroyed"):
            await task

    qasync_loop.run(main())
    assert manager.wait_for_done(5)
    returned.wait()
    assert saw_cancel == [True]
    assert after_block == []


def test_task_group_misuse_is_explained(manager: WorkerManager, qasync_loop: AsyncRunner) -> None:
    group = TaskGroup(manager)
    with pytest.raises(RuntimeError, match="enter the group first"):
        group.submit(abs, 1)
    with pytest.raises(UnknownPoolError):
        TaskGroup(manager, pool="gpu")
    with pytest.raises(TypeError, match="owner must be a QObject"):
        TaskGroup(manager, owner="window")  # type: ignore[arg-type]

    async def twice() -> None:
        async with group:
            pass
        async with group:
            pass

    with pytest.raises(RuntimeError, match="already entered"):
        qasync_loop.run(twice())
