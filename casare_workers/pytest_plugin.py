"""pytest plugin (loaded automatically through the ``pytest11`` entry point).

Fixtures:
    manager: a fresh :class:`~casare_workers.WorkerManager` on the ``qapp`` of
        pytest-qt, the default manager while the test runs.
        At teardown it is shut down; the test fails if a task or long job was not
        delivered, or a worker thread or job survived the shutdown.
    qasync_loop: a real ``qasync.QEventLoop`` on that ``qapp`` (needs the ``async``
        extra), as an :class:`AsyncRunner`: ``qasync_loop.run(coro)`` runs a coroutine
        to completion on it.  At teardown the loop is closed; the test fails if an
        asyncio task was left pending.

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

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from PySide6.QtCore import QCoreApplication, QEventLoop

__all__ = (
    "AsyncRunner",
    "assert_gui_thread",
    "assert_worker_thread",
    "manager",
    "qasync_loop",
    "wait_for_handle",
)

T = TypeVar("T")

#: Seconds the fixture's shutdown waits for running work at teardown.
TEARDOWN_TIMEOUT = 5.0


def assert_gui_thread() -> None:
    """Fail unless called on the GUI (QApplication) thread."""
    from casare_workers.lowlevel import get_engine

    assert get_engine().is_gui_thread(), (
        f"expected the GUI thread, running on {threading.current_thread().name}"
    )


def assert_worker_thread() -> None:
    """Fail if called on the GUI thread."""
    from casare_workers.lowlevel import get_engine

    assert not get_engine().is_gui_thread(), "expected a worker thread, running on the GUI thread"


def wait_for_handle(handle: Any, timeout: float = 5.0) -> Any:
    """Process GUI events until ``handle`` has been delivered, then return its result.

    Raises the task's exception like ``handle.result()``; fails the test on timeout.
    """
    deadline = time.monotonic() + timeout
    while not handle.delivered():
        if time.monotonic() > deadline:
            pytest.fail(f"{handle!r} was not delivered within {timeout} s")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        handle.engine.flush()
    return handle.result(0)


@pytest.fixture
def manager(qapp: Any) -> Iterator[Any]:
    """A WorkerManager that must leave no task or thread behind."""
    from casare_workers import WorkerManager, set_default_manager

    mgr = WorkerManager()
    set_default_manager(mgr)  # as an application's first manager is
    try:
        yield mgr
    finally:
        set_default_manager(None)
    _deliver_what_ended(mgr, TEARDOWN_TIMEOUT)
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


def _deliver_what_ended(mgr: Any, timeout: float) -> None:
    """Let the GUI thread deliver work whose outcome is already decided.

    A long job awaited to its end may still be finishing its thread when the test
    returns; that is not work left behind.  Work still running is not waited for: the
    fixture reports it.
    """
    deadline = time.monotonic() + timeout
    while any(item.done() for item in (*mgr.live_tasks(), *mgr.live_jobs())):
        if time.monotonic() > deadline:
            return
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        mgr.engine.flush()


class AsyncRunner:
    """Runs coroutines on a qasync loop in tests (the ``qasync_loop`` fixture).

    Attributes:
        loop: The ``qasync.QEventLoop``; it runs the Qt event loop while a coroutine
            runs, so signals, timers and the delivery engine work as in the app.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` to completion on the loop; fail the test after ``timeout`` s."""

        async def guarded() -> T:
            # The deadline is judged from outside the coroutine: a cancellation the
            # coroutine catches (pytest.raises(CancelledError)...) cannot hide a hang.
            task = asyncio.ensure_future(coro)
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=TEARDOWN_TIMEOUT)
                pytest.fail(f"coroutine did not finish within {timeout} s")
            return task.result()

        return self.loop.run_until_complete(guarded())


@pytest.fixture
def qasync_loop(qapp: Any) -> Iterator[AsyncRunner]:
    """A qasync event loop on ``qapp``; closed at teardown, leaving no task behind."""
    qasync = pytest.importorskip("qasync")
    # Closing a test's last window must not quit the loop under the test's feet.
    quit_on_close = qapp.quitOnLastWindowClosed()
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    try:
        yield AsyncRunner(loop)
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=TEARDOWN_TIMEOUT))
            pytest.fail(f"the test left asyncio tasks pending: {pending}")
    finally:
        loop.close()
        _delete_loop_qobjects(loop)
        qapp.setQuitOnLastWindowClosed(quit_on_close)


def _delete_loop_qobjects(loop: asyncio.AbstractEventLoop) -> None:
    """Destroy a closed qasync loop's QObjects now, on the GUI thread.

    The loop is full of reference cycles, so the cyclic GC frees it later, on whichever
    thread happens to collect (often a worker).  A timer object destroyed off its thread
    cannot unregister its pending zero-timers, and the next timer dispatch on the GUI
    thread then crashes (seen as a segfault in a later test).
    """
    import shiboken6
    from PySide6.QtCore import QObject

    for name in ("_timer", "_QEventLoop__call_soon_signaller"):
        obj = getattr(loop, name, None)
        if isinstance(obj, QObject) and shiboken6.isValid(obj):
            shiboken6.delete(obj)
