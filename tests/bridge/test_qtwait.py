"""``wait_signal`` and ``open_dialog`` (``casare_workers._bridge._qtwait``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog

from casare_workers import (
    open_dialog,
    wait_signal,
)
from casare_workers.pytest_plugin import AsyncRunner
from tests.bridge.support import in_thread, until


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
