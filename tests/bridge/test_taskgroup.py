"""``TaskGroup`` (``casare_workers._bridge._taskgroup``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtWidgets import QWidget

from casare_workers import (
    TaskContext,
    TaskGroup,
    UnknownPoolError,
    WorkerManager,
)
from casare_workers.pytest_plugin import AsyncRunner
from tests.bridge.support import await_it, in_thread
from tests.conftest import Gate


def test_task_group_collects_results(manager: WorkerManager, qasync_loop: AsyncRunner) -> None:
    async def main() -> tuple[int, str]:
        async with TaskGroup(manager) as group:
            number = group.submit(pow, 3, 4)
            text = group.create_task(await_it(manager.submit(str.lower, "OK")))
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
