"""``@async_slot`` and the tasks an owner holds (``casare_workers._bridge._slots``, ``_owned``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pytest
from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDialog, QWidget

from casare_workers import (
    NoEventLoopError,
    WorkerManager,
    async_slot,
)
from casare_workers.pytest_plugin import AsyncRunner
from tests.bridge.support import until


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
