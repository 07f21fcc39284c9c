"""Helpers shared by the bridge's tests: run the loop until, await off the loop's thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

__all__ = ("await_it", "in_thread", "until")


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


async def await_it(awaitable: Any) -> Any:
    """``await awaitable`` in a coroutine of its own (for ``asyncio.ensure_future``)."""
    return await awaitable
