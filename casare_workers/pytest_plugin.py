"""pytest plugin (loaded automatically through the ``pytest11`` entry point).

Fixtures:
    manager: a fresh :class:`~casare_workers.WorkerManager` on the ``qapp`` of
        pytest-qt.  At teardown it is shut down; the test fails if a task or long job
        was not delivered, or a worker thread or job survived the shutdown.

Helpers for deterministic tests (no sleeps):
    :func:`wait_for_handle`, :func:`assert_gui_thread`, :func:`assert_worker_thread`.

Example::

    def test_loads(manager, qtbot):
        handle = manager.submit(load, "a.txt")
        with qtbot.waitSignal(handle.signals.finished):
            pass
        assert handle.result() == "content"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from PySide6.QtCore import QCoreApplication, QEventLoop

__all__ = ("assert_gui_thread", "assert_worker_thread", "manager", "wait_for_handle")

T = TypeVar("T")

#: Seconds the fixture's shutdown waits for running work at teardown.
TEARDOWN_TIMEOUT = 5.0


def assert_gui_thread() -> None:
    """Fail unless called on the GUI (QApplication) thread."""
    from casare_workers import get_engine

    assert get_engine().is_gui_thread(), (
        f"expected the GUI thread, running on {threading.current_thread().name}"
    )


def assert_worker_thread() -> None:
    """Fail if called on the GUI thread."""
    from casare_workers import get_engine

    assert not get_engine().is_gui_thread(), "expected a worker thread, running on the GUI thread"


def wait_for_handle(handle: Any, timeout: float = 5.0) -> Any:
    """Process GUI events until ``handle`` has been delivered, then return its result.

    Raises the task's exception like ``handle.result()``; fails the test on timeout.
    """
    deadline = time.monotonic() + timeout
    while not handle._delivered:
        if time.monotonic() > deadline:
            pytest.fail(f"{handle!r} was not delivered within {timeout} s")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        handle._engine.flush()
    return handle.result(0)


@pytest.fixture
def manager(qapp: Any) -> Iterator[Any]:
    """A WorkerManager that must leave no task or thread behind."""
    from casare_workers import WorkerManager

    mgr = WorkerManager()
    yield mgr
    undelivered = [repr(task) for task in mgr.live_tasks()]
    undelivered += [repr(job) for job in mgr.live_jobs()]
    report = mgr.shutdown(TEARDOWN_TIMEOUT)
    left = [t.name for t in mgr.threads() if t.is_alive()]
    if undelivered or report.still_running or left:
        pytest.fail(
            "the test left work behind: "
            f"tasks not delivered {undelivered}, still running {list(report.still_running)}, "
            f"threads alive {left}"
        )
