"""``async for`` over a map (``casare_workers._bridge._mapiter``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from casare_workers import (
    TaskState,
    WorkerManager,
)
from casare_workers.pytest_plugin import AsyncRunner
from tests.bridge.support import in_thread, until
from tests.conftest import Gate


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
