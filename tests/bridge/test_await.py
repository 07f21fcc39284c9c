"""``await`` on task handles and long jobs (``casare_workers._bridge._await``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Generator
from typing import Any

import pytest

from casare_workers import (
    JobContext,
    LongJob,
    TaskContext,
    TaskState,
    WorkerManager,
)
from casare_workers._bridge._await import await_job
from casare_workers.pytest_plugin import AsyncRunner, assert_gui_thread, assert_worker_thread
from tests.bridge.support import await_it, in_thread
from tests.conftest import Gate

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
        waiter = asyncio.ensure_future(await_it(queued))
        await asyncio.sleep(0)  # let the waiter reach its await
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter
        assert queued.cancelled()
        gate.open()
        await blocker

    qasync_loop.run(main())
    assert not ran.is_set()


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
        waiter = asyncio.ensure_future(await_it(handle))
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
        waiter = asyncio.ensure_future(await_it(handle))
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
        return await_job(self)


def test_await_job_settled_on_another_thread(qasync_loop: AsyncRunner) -> None:
    job = StandInJob()

    async def main() -> str:
        waiter = asyncio.ensure_future(await_it(job))
        await asyncio.sleep(0)  # the waiter is parked on the job
        await in_thread(lambda: job.future.set_result("migrated"))
        return await waiter  # type: ignore[no-any-return]

    assert qasync_loop.run(main()) == "migrated"


def test_await_job_cancelled_awaiter_cancels_the_job(qasync_loop: AsyncRunner) -> None:
    job = StandInJob()

    async def main() -> None:
        waiter = asyncio.ensure_future(await_it(job))
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
        waiter = asyncio.ensure_future(await_it(job))
        await in_thread(gate.wait)
        waiter.cancel("test cancels")
        with pytest.raises(asyncio.CancelledError, match="test cancels"):
            await waiter

    qasync_loop.run(main())
    assert job.cancel_reason is not None
    assert manager.wait_for_done(5)


# -- qasync is recognised, never imported ------------------------------------------------


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
