"""contextvars travel with the work the bridge starts, and do not leak back."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from casare_workers import (
    WorkerManager,
    asyncify,
    run_coroutine_sync,
    run_in_loop,
)
from casare_workers.pytest_plugin import AsyncRunner

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


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
