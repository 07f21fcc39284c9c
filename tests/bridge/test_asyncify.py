"""``asyncify`` (``casare_workers._bridge._asyncify``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from casare_workers import (
    TaskContext,
    UnknownPoolError,
    WorkerManager,
    asyncify,
)
from casare_workers.pytest_plugin import AsyncRunner
from tests.bridge.support import in_thread
from tests.conftest import Gate


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
