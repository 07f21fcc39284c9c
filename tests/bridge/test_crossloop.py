"""``run_in_loop`` and ``run_coroutine_sync`` (``casare_workers._bridge._crossloop``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import QTimer

from casare_workers import (
    BlockingCallError,
    NoEventLoopError,
    WorkerManager,
    attach_loop,
    run_coroutine_sync,
    run_in_loop,
)
from casare_workers.lowlevel import get_engine
from casare_workers.pytest_plugin import AsyncRunner, assert_worker_thread
from tests.bridge.support import in_thread, until

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
            sync_helper()  # a sync function called from a coroutine, as apps do

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
