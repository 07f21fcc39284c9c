"""How a task function wants to be called: ``ctx``, ``progress_callback`` or plain.

The rule is ``inspect.signature``'s, which users see in their editor and in ``help()``:
a decorated function (``functools.wraps``) is looked at through ``__wrapped__`` when the
wrapper itself only forwards ``**kwargs``.  Checked for every way a function runs:
thread pools, ``Worker``, ``LongJob`` and the process pool (the Dask pool is handed the
same mode as the process pool, from the task).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from casare_workers import (
    LongJob,
    PoolConfig,
    TaskContext,
    Worker,
    WorkerManager,
)
from casare_workers._introspect import (
    PLAIN,
    WANTS_CTX,
    WANTS_PROGRESS_CALLBACK,
    call_mode,
    positional_slot,
)
from casare_workers.pytest_plugin import wait_for_handle
from tests import proc_tasks

logged = proc_tasks.logged


@logged
def load(path: str, ctx: TaskContext) -> str:
    ctx.status(f"loading {path}")
    return f"{path} loaded"


@logged
def tutorial(progress_callback: Any) -> str:
    progress_callback.emit(100)
    return "done"


@logged
def plain(path: str) -> str:
    return path


@logged
@logged
def twice(path: str, ctx: TaskContext) -> str:
    return path


def test_call_mode_follows_functools_wraps_as_inspect_signature_does() -> None:
    assert list(inspect.signature(load).parameters) == ["path", "ctx"]
    assert call_mode(load) == WANTS_CTX
    assert call_mode(tutorial) == WANTS_PROGRESS_CALLBACK
    assert call_mode(plain) == PLAIN
    assert call_mode(twice) == WANTS_CTX
    assert call_mode(functools.partial(load, "a.txt")) == WANTS_CTX


def test_call_mode_of_a_wrapper_that_takes_ctx_itself_or_sets_a_signature() -> None:
    def injects(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(path: str, ctx: TaskContext) -> Any:  # the wrapper needs ctx
            ctx.status("starting")
            return fn(path)

        return wrapper

    assert call_mode(injects(plain)) == WANTS_CTX  # what the call really needs

    def announced(path: str, ctx: TaskContext) -> str:
        return path

    forwarding = logged(plain)
    forwarding.__signature__ = inspect.signature(announced)
    assert call_mode(forwarding) == WANTS_CTX


def test_call_mode_survives_a_wrapped_cycle() -> None:
    def forwards(**kwargs: Any) -> None: ...

    forwards.__wrapped__ = forwards  # type: ignore[attr-defined]
    assert call_mode(forwards) == PLAIN


def test_positional_slot_of_a_decorated_function() -> None:
    assert positional_slot(load, "ctx") == 1


def test_decorated_ctx_function_runs_on_a_thread_pool(manager: WorkerManager) -> None:
    handle = manager.submit(load, "a.txt")
    assert wait_for_handle(handle) == "a.txt loaded"
    assert handle.status_text == "loading a.txt"
    assert wait_for_handle(manager.submit(tutorial)) == "done"


def test_decorated_ctx_function_passed_ctx_positionally_is_refused(
    manager: WorkerManager,
) -> None:
    with pytest.raises(TypeError, match="declares 'ctx'"):
        manager.submit(load, "a.txt", "one too many")


def test_decorated_ctx_function_runs_as_a_worker(manager: WorkerManager) -> None:
    worker: Worker[str] = Worker(load, "b.txt")
    assert wait_for_handle(manager.start(worker)) == "b.txt loaded"


def test_decorated_ctx_function_runs_as_a_long_job(manager: WorkerManager, qtbot: QtBot) -> None:
    job: LongJob[str] = LongJob(load, args=("c.txt",), manager=manager)
    job.start()
    qtbot.waitUntil(job.isFinished, timeout=10_000)
    assert job.get(0) == "c.txt loaded"


def test_decorated_ctx_function_runs_on_a_process_pool(qapp: Any) -> None:
    with WorkerManager(pools={"proc": PoolConfig(1, kind="process")}) as manager:
        handle = manager.options(pool="proc").submit(proc_tasks.decorated_count_to, 3)
        assert wait_for_handle(handle, proc_tasks.WAIT) == 3
        assert handle.progress_value == (3, 3)
