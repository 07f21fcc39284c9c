"""Every misuse the API can receive gives a clear error, at the call that made it.

Each row of :data:`MISUSES` is one row of the table in ``docs/errors.md``: the wrong
call, the exception class it raises, and fragments of the message that must name what
was wrong and what to do instead.  Misuses that need their own setting (a running loop,
a shut-down manager, a task still running) have their own test below.  Rows proven by a
test elsewhere (no QApplication, an unreachable Dask scheduler, ...) name that test in
the docs table instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from casare_workers import (
    AlreadyStartedError,
    BlockingCallError,
    ConfigurationError,
    JobContext,
    LongJob,
    LoopThread,
    ManagerShutdownError,
    PoolConfig,
    SerializationError,
    SubprocessJob,
    TaskContext,
    ThreadClosedError,
    UnknownPoolError,
    Worker,
    WorkerManager,
    async_slot,
    asyncify,
    run_coroutine_sync,
    run_in_loop,
)
from casare_workers._config import resolve_pool_configs
from casare_workers.pytest_plugin import AsyncRunner, wait_for_handle
from tests.conftest import Gate

#: Generous: the machines that run the suite may be loaded (no timing is asserted).
WAIT = 30.0


def _plain(value: int = 1) -> int:
    return value


def _with_ctx(path: str, ctx: TaskContext) -> str:
    return path


def _job(ctx: JobContext) -> int:
    return 1


def _deleted_widget() -> QWidget:
    widget = QWidget()
    shiboken6.delete(widget)
    return widget


@dataclass(frozen=True)
class Misuse:
    """One row: ``call(manager)`` must raise ``error`` with every fragment in its message."""

    call: Callable[[WorkerManager], object]
    error: type[BaseException]
    fragments: tuple[str, ...]


MISUSES: dict[str, Misuse] = {
    # -- what to run ------------------------------------------------------------------
    "submit a non-callable": Misuse(
        lambda m: m.submit("report.pdf"),  # type: ignore[call-overload]
        TypeError,
        ("expects a callable", "'report.pdf'", "submit(fn, *args, **kwargs)"),
    ),
    "map a non-callable": Misuse(
        lambda m: m.map(42, [1, 2]),  # type: ignore[arg-type]
        TypeError,
        ("expects a callable", "42", "map(fn, items)"),
    ),
    "map over a non-iterable": Misuse(
        lambda m: m.map(_plain, 5),  # type: ignore[arg-type]
        TypeError,
        ("expects an iterable", "int"),
    ),
    "map with chunksize 0": Misuse(
        lambda m: m.map(_plain, [1], chunksize=0),
        ConfigurationError,
        ("chunksize", ">= 1", "got 0"),
    ),
    "Worker of a non-callable": Misuse(
        lambda m: Worker(3),
        TypeError,
        ("expects a callable", "got 3", "Worker(fn, ...)"),
    ),
    "Worker with nothing to run": Misuse(
        lambda m: Worker(),
        TypeError,
        ("needs a function", "override work()"),
    ),
    "start() a plain function": Misuse(
        lambda m: m.start(_plain),  # type: ignore[arg-type]
        TypeError,
        ("casare_workers.Worker", "function", "use submit(fn, ...)"),
    ),
    "LongJob of a non-callable": Misuse(
        lambda m: LongJob(7, manager=m),
        TypeError,
        ("expects a callable", "int", "owner=widget"),
    ),
    "pass ctx= yourself": Misuse(
        lambda m: m.submit(_with_ctx, "a.txt", ctx=None),
        TypeError,
        ("_with_ctx", "declares 'ctx'", "do not pass ctx yourself"),
    ),
    "pass ctx positionally": Misuse(
        lambda m: m.submit(_with_ctx, "a.txt", None),
        TypeError,
        ("_with_ctx", "declares 'ctx'", "one positional argument too many"),
    ),
    "pass ctx to a LongJob": Misuse(
        lambda m: LongJob(_job, kwargs={"ctx": None}, manager=m),
        TypeError,
        ("passes ctx itself", "do not put 'ctx' in kwargs"),
    ),
    "then() with a non-callable": Misuse(
        lambda m: m.submit(_plain).then(None, "log it"),  # type: ignore[arg-type]
        TypeError,
        ("on_error must be a callable", "'log it'", "without calling it"),
    ),
    "add_done_callback() with a non-callable": Misuse(
        lambda m: m.submit(_plain).add_done_callback(5),  # type: ignore[arg-type]
        TypeError,
        ("fn must be a callable", "5", "without calling it"),
    ),
    "then() with a context that is no QObject": Misuse(
        lambda m: m.submit(_plain).then(print, context="label"),  # type: ignore[arg-type]
        TypeError,
        ("then(context=...) must be a QObject", "str"),
    ),
    "a command as one string": Misuse(
        lambda m: SubprocessJob("pip install x", manager=m),
        TypeError,
        ("sequence of arguments", "a single string is not split"),
    ),
    "asyncify a coroutine function": Misuse(
        lambda m: asyncify(asyncio.sleep),
        TypeError,
        ("asyncify() wraps blocking functions", "sleep", "await it directly"),
    ),
    "async_slot on a plain function": Misuse(
        lambda m: async_slot(_plain),
        TypeError,
        ("'async def'", "_plain", "connected to signals directly"),
    ),
    "run_coroutine_sync of a function": Misuse(
        lambda m: run_coroutine_sync(_plain),  # type: ignore[arg-type]
        TypeError,
        ("takes a coroutine object", "call the async function", "function"),
    ),
    # -- where to run it --------------------------------------------------------------
    "an unknown pool name": Misuse(
        lambda m: m.options(pool="gpu"),
        UnknownPoolError,
        ("no pool named 'gpu'", "'io'", "WorkerManager(pools={...})"),
    ),
    "a pool name that is no identifier": Misuse(
        lambda m: resolve_pool_configs({"DB Reads": 2}, environ={}),
        ConfigurationError,
        ("pool name 'DB Reads' is invalid", "lower-case", "'db_reads'"),
    ),
    "pools given as a list": Misuse(
        lambda m: resolve_pool_configs([("io", 2)], environ={}),  # type: ignore[arg-type]
        ConfigurationError,
        ("pools must be a mapping", "list", "pools={'io': 8"),
    ),
    "a pool size of 0": Misuse(
        lambda m: resolve_pool_configs({"io": 0}, environ={}),
        ConfigurationError,
        ("size of pool 'io'", "1 or more", "got 0"),
    ),
    "a pool size as a string": Misuse(
        lambda m: resolve_pool_configs({"io": "4"}, environ={}),  # type: ignore[dict-item]
        ConfigurationError,
        ("size of pool 'io'", "whole number of workers", "'4' (str)"),
    ),
    "a pool size as a bool": Misuse(
        lambda m: resolve_pool_configs({"io": True}, environ={}),
        ConfigurationError,
        ("size of pool 'io'", "whole number of workers", "True (bool)"),
    ),
    "PoolConfig(max_workers=0)": Misuse(
        lambda m: PoolConfig(0),
        ConfigurationError,
        ("max_workers", "1 or more", "got 0"),
    ),
    "an unknown pool kind": Misuse(
        lambda m: PoolConfig(2, kind="gpu"),  # type: ignore[arg-type]
        ConfigurationError,
        ("kind must be one of", "'thread'", "'process'", "got 'gpu'"),
    ),
    "a Dask pool with no scheduler": Misuse(
        lambda m: PoolConfig(2, kind="dask"),
        ConfigurationError,
        ("needs exactly one of address=", "client="),
    ),
    "an environment size that is no number": Misuse(
        lambda m: resolve_pool_configs(environ={"CASARE_WORKERS_IO": "lots"}),
        ConfigurationError,
        ("CASARE_WORKERS_IO='lots'", "not a whole number", "or unset it"),
    ),
    "an environment size of 0": Misuse(
        lambda m: resolve_pool_configs(environ={"CASARE_WORKERS_CPU": "0"}),
        ConfigurationError,
        ("CASARE_WORKERS_CPU='0'", "1 or more", "or unset it"),
    ),
    # -- options ----------------------------------------------------------------------
    "a negative timeout": Misuse(
        lambda m: m.options(timeout=-1),
        ConfigurationError,
        ("timeout must be a positive number of seconds", "got -1"),
    ),
    "a timeout as a string": Misuse(
        lambda m: m.options(timeout="5"),  # type: ignore[arg-type]
        ConfigurationError,
        ("timeout must be a positive number of seconds", "got '5'"),
    ),
    "a NaN timeout": Misuse(
        lambda m: m.options(timeout=float("nan")),
        ConfigurationError,
        ("timeout must be a positive number of seconds", "got nan"),
    ),
    "a priority that is no int": Misuse(
        lambda m: m.options(priority="high"),  # type: ignore[arg-type]
        ConfigurationError,
        ("priority must be an int", "higher runs first", "got 'high'"),
    ),
    "an unhashable key": Misuse(
        lambda m: m.options(key=["search"]),  # type: ignore[arg-type]
        TypeError,
        ("key must be hashable", "a string or a tuple", "list"),
    ),
    "an owner that is no QObject": Misuse(
        lambda m: m.options(owner="main window"),  # type: ignore[arg-type]
        TypeError,
        ("owner must be a QObject", "got str", "owner=self"),
    ),
    "an owner already destroyed": Misuse(
        lambda m: m.options(owner=_deleted_widget()),
        ValueError,
        ("owner has already been destroyed", "live widget or omit owner"),
    ),
    "a name that is no str": Misuse(
        lambda m: m.options(name=12),  # type: ignore[arg-type]
        TypeError,
        ("name must be a str", "int"),
    ),
    "a negative shutdown timeout": Misuse(
        lambda m: m.shutdown(-1),
        ConfigurationError,
        ("timeout must be a non-negative number of seconds", "got -1"),
    ),
    "wait_for_done(None)": Misuse(
        lambda m: m.wait_for_done(None),  # type: ignore[arg-type]
        ConfigurationError,
        ("wait_for_done() timeout", "non-negative number of seconds", "got None"),
    ),
    "a LoopThread initializer that is no callable": Misuse(
        lambda m: LoopThread(initializer=5),  # type: ignore[arg-type]
        TypeError,
        ("initializer must be callable", "int"),
    ),
}


@pytest.mark.parametrize("row", list(MISUSES))
def test_misuse_raises_a_clear_error(manager: WorkerManager, row: str) -> None:
    misuse = MISUSES[row]
    with pytest.raises(misuse.error) as info:
        misuse.call(manager)
    message = str(info.value)
    missing = [fragment for fragment in misuse.fragments if fragment not in message]
    assert missing == [], f"{row}: {message!r} lacks {missing}"
    assert manager.live_tasks() == [] or row.startswith(("then", "add_done"))
    assert manager.wait_for_done(WAIT)


def test_misuse_ctx_positional_check_leaves_correct_calls_alone(manager: WorkerManager) -> None:
    class Reader:
        def read(self, path: str, ctx: TaskContext) -> str:
            return path.upper()

    assert wait_for_handle(manager.submit(_with_ctx, "a.txt"), WAIT) == "a.txt"
    assert wait_for_handle(manager.submit(Reader().read, "b.txt"), WAIT) == "B.TXT"
    with pytest.raises(TypeError, match="one positional argument too many"):
        manager.submit(Reader().read, "b.txt", None)


def test_misuse_unpicklable_work_for_a_process_pool(qapp: Any) -> None:
    lock = threading.Lock()
    with WorkerManager(pools={"proc": PoolConfig(1, kind="process")}) as manager:
        proc = manager.options(pool="proc")
        cases: list[tuple[Callable[[], object], tuple[str, ...]]] = [
            (lambda: proc.submit(lambda: 1), ("the function", "<lambda>", "module level")),
            (lambda: proc.submit(_plain, lock), ("argument 0", "lock", "pass data that pickles")),
            (lambda: proc.map(_plain, [1, lock]), ("item 1", "lock", "pass data that pickles")),
        ]
        for call, fragments in cases:
            with pytest.raises(SerializationError) as info:
                call()
            assert all(f in str(info.value) for f in fragments), str(info.value)
        assert manager.live_tasks() == []  # refused before anything was queued


def test_misuse_submit_after_shutdown(qapp: Any) -> None:
    manager = WorkerManager(pools={"io": 1})
    manager.shutdown(5)
    calls: list[Callable[[], object]] = [
        lambda: manager.submit(_plain),
        lambda: manager.map(_plain, [1]),
        lambda: manager.start(Worker(_plain)),
        lambda: LongJob(_job, manager=manager).start(),
    ]
    for call in calls:
        with pytest.raises(ManagerShutdownError, match=r"shut down.*Create a new WorkerManager"):
            call()


def test_misuse_blocking_calls_on_the_gui_thread(manager: WorkerManager, gate: Gate) -> None:
    handle = manager.submit(gate.wait)
    for call in (handle.result, handle.exception, handle.wait):
        with pytest.raises(BlockingCallError) as info:
            call()
        message = str(info.value)
        assert "on the GUI thread with no timeout" in message
        assert "handle.then(...)" in message
        assert "pass an explicit timeout" in message
    gate.open()
    assert wait_for_handle(handle, WAIT) is True
    assert handle.result() is True  # once ended, no wait is needed: no error


def test_misuse_blocking_on_a_running_loop(qasync_loop: AsyncRunner) -> None:
    async def coroutine() -> int:
        return 5

    async def main() -> int:
        pending = coroutine()
        with pytest.raises(BlockingCallError, match=r"while its asyncio loop is running.*await"):
            run_coroutine_sync(pending, timeout=2)
        future = run_in_loop(coroutine())
        with pytest.raises(BlockingCallError, match=r"would deadlock.*await"):
            future.result(timeout=2)
        return await asyncio.wrap_future(future)

    assert qasync_loop.run(main(), WAIT) == 5


def test_misuse_starting_twice(manager: WorkerManager) -> None:
    worker = Worker(_plain)
    manager.start(worker)
    with pytest.raises(AlreadyStartedError, match=r"already started.*create a new one"):
        manager.start(worker)
    job: LongJob[int] = LongJob(_job, manager=manager)
    job.start()
    with pytest.raises(AlreadyStartedError, match=r"already started.*create a new one"):
        job.start()
    assert manager.wait_for_done(WAIT)


def test_misuse_closed_loop_thread_and_blocking_call(qapp: Any) -> None:
    thread = LoopThread("misuse")
    try:
        with pytest.raises(BlockingCallError, match=r"GUI thread with no timeout.*submit\(\)"):
            thread.call(_plain)
    finally:
        assert thread.close(WAIT)
    with pytest.raises(ThreadClosedError, match=r"'misuse' is closed; create a new one"):
        thread.submit(_plain)


def test_misuse_long_job_with_a_qt_parent_or_terminate(manager: WorkerManager) -> None:
    job: LongJob[int] = LongJob(_job, manager=manager)
    parent = QObject()
    with pytest.raises(TypeError, match=r"cannot have a Qt parent.*pass owner=widget"):
        job.setParent(parent)
    with pytest.raises(RuntimeError, match=r"never safe.*job\.stop\(timeout\) or job\.cancel"):
        job.terminate()


def test_misuse_manager_created_off_the_gui_thread(qapp: Any) -> None:
    errors: list[BaseException] = []

    def create() -> None:
        try:
            WorkerManager()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=create)
    thread.start()
    thread.join(WAIT)
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "create the WorkerManager on the GUI thread" in str(errors[0])


def test_misuse_owner_destroyed_between_options_and_submit(manager: WorkerManager) -> None:
    widget = QWidget()
    opts = manager.options(owner=widget)
    shiboken6.delete(widget)
    with pytest.raises(ValueError, match=r"owner .* destroyed.*live widget or omit owner"):
        opts.submit(_plain)
