"""``PoolExecutor`` and ``attach_loop`` (``casare_workers._bridge._executor``)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from casare_workers import (
    PoolExecutor,
    UnknownPoolError,
    WorkerManager,
    attach_loop,
)
from casare_workers.pytest_plugin import AsyncRunner
from tests.conftest import Gate


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
