"""One context contract: a function's ``ctx`` is the same wherever it runs.

``TaskContext`` (a pool thread), ``JobContext`` (a long job: it adds pause checkpoints),
``RemoteContext`` (a worker process) and ``DaskContext`` (a Dask worker) have the same
public methods and properties, with the same signatures, and answer the same way: before
a cancel, ``cancelled`` is False and ``wait(0)`` returns False; once cancelled, ``wait``
returns True at once, ``cancelled`` is True and ``raise_if_cancelled`` raises
``TaskCancelledError`` naming the task; ``progress`` refuses what is not a number with
the same ``TypeError``.  The behaviour is checked on the real thing: a thread pool, a
long job, a process pool and a Dask ``LocalCluster`` on loopback (its workers as threads
of this process, so the task can load casare_workers' error class; see
``_daskworker`` for a cluster without casare_workers).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from casare_workers import (
    JobContext,
    LongJob,
    PoolConfig,
    TaskContext,
    TaskHandle,
    WorkerManager,
)
from casare_workers._pools._daskworker import DaskContext
from casare_workers._pools._processworker import RemoteContext
from tests import context_tasks

WAIT = 30.0
WAIT_MS = int(WAIT * 1000)

#: What JobContext adds to the contract (pausing), and nothing else.
JOB_EXTRAS = {"acheckpoint", "checkpoint", "paused", "point_of_no_return"}


def public_api(cls: type) -> dict[str, str]:
    """Each public name of ``cls``: ``"property"`` or the method's signature."""
    api: dict[str, str] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property):
            api[name] = "property"
        elif callable(member):
            api[name] = str(inspect.signature(member))
        else:
            api[name] = f"attribute {member!r}"
    return api


@pytest.mark.parametrize("cls", [RemoteContext, DaskContext], ids=lambda cls: cls.__name__)
def test_remote_contexts_have_exactly_the_task_context_api(cls: type) -> None:
    assert public_api(cls) == public_api(TaskContext)


def test_job_context_has_the_task_context_api_and_only_adds_pausing() -> None:
    contract = public_api(TaskContext)
    job = public_api(JobContext)
    assert {name: job[name] for name in contract} == contract
    assert set(job) - set(contract) == JOB_EXTRAS


def test_the_contract_is_what_tasks_are_documented_to_use() -> None:
    assert set(public_api(TaskContext)) == {
        "cancelled",
        "name",
        "progress",
        "raise_if_cancelled",
        "status",
        "task_id",
        "wait",
    }


@pytest.mark.parametrize(
    "ctx",
    [RemoteContext(1, "t"), DaskContext(1, "t", "topic", "cancel")],
    ids=["RemoteContext", "DaskContext"],
)
def test_contexts_outside_a_worker_wait_like_a_thread(ctx: TaskContext | DaskContext) -> None:
    """Called directly (a unit test of a task function): not cancelled, deadlines honoured."""
    assert ctx.cancelled is False
    assert ctx.wait(0) is False
    assert ctx.wait(-1) is False  # a deadline already passed, as threading.Event.wait
    ctx.raise_if_cancelled()


# -- behaviour: each kind of work, cancelled while its function waits ---------------------


def expected_report(task_id: int, name: str) -> dict[str, Any]:
    return {
        "before": {"cancelled": False, "wait(0)": False, "wait(-1)": False},
        "task_id": task_id,
        "name": name,
        "bad progress": ("ctx.progress(current, total) takes two integers, got 'seven' and 0"),
        "after": {
            "woke": True,
            "cancelled": True,
            "wait": True,
            "raised": "casare_workers.TaskCancelledError",
            "message": f"task {name!r} was cancelled",
        },
    }


def read_report(qtbot: QtBot, path: Path) -> dict[str, Any]:
    qtbot.waitUntil(path.exists, timeout=WAIT_MS)
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def cancel_while_waiting(qtbot: QtBot, handle: TaskHandle[Any], path: Path) -> dict[str, Any]:
    qtbot.waitUntil(lambda: handle.status_text == "waiting", timeout=WAIT_MS)
    assert handle.cancel()
    return read_report(qtbot, path)


@pytest.fixture
def make_manager(qapp: Any) -> Iterator[Callable[[dict[str, int | PoolConfig]], WorkerManager]]:
    """Managers with the given pools; each must end with no task or thread left."""
    made: list[WorkerManager] = []

    def make(pools: dict[str, int | PoolConfig]) -> WorkerManager:
        manager = WorkerManager(pools=pools, shutdown_timeout=WAIT)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        report = manager.shutdown(WAIT)
        assert report.still_running == ()
        assert manager.threads() == []


def test_task_context_on_a_thread_answers_a_cancel(
    manager: WorkerManager, qtbot: QtBot, tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    handle = manager.submit(context_tasks.report_cancellation, str(path))
    assert cancel_while_waiting(qtbot, handle, path) == expected_report(handle.id, handle.name)


def test_job_context_answers_a_cancel(
    manager: WorkerManager, qtbot: QtBot, tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    job: LongJob[str] = LongJob(
        context_tasks.report_cancellation, args=(str(path),), manager=manager
    )
    job.start()
    qtbot.waitUntil(lambda: job.status_text == "waiting", timeout=WAIT_MS)
    assert job.cancel()
    report = read_report(qtbot, path)
    qtbot.waitUntil(lambda: job.isFinished() and job not in manager.live_jobs(), timeout=WAIT_MS)
    assert report == expected_report(report["task_id"], job.name)


def test_remote_context_in_a_worker_process_answers_a_cancel(
    make_manager: Callable[[dict[str, int | PoolConfig]], WorkerManager],
    qtbot: QtBot,
    tmp_path: Path,
) -> None:
    # A long cancel_grace: the worker must report, not be killed first.
    manager = make_manager({"proc": PoolConfig(1, kind="process", cancel_grace=WAIT)})
    path = tmp_path / "report.json"
    handle = manager.options(pool="proc").submit(context_tasks.report_cancellation, str(path))
    assert cancel_while_waiting(qtbot, handle, path) == expected_report(handle.id, handle.name)


@pytest.fixture(scope="module")
def threads_cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    )
    yield cluster
    cluster.close()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:distributed")
def test_dask_context_on_a_cluster_answers_a_cancel(
    make_manager: Callable[[dict[str, int | PoolConfig]], WorkerManager],
    threads_cluster: Any,
    qtbot: QtBot,
    tmp_path: Path,
) -> None:
    manager = make_manager(
        {"dask": PoolConfig(2, kind="dask", address=threads_cluster.scheduler_address)}
    )
    path = tmp_path / "report.json"
    handle = manager.options(pool="dask").submit(context_tasks.report_cancellation, str(path))
    assert cancel_while_waiting(qtbot, handle, path) == expected_report(handle.id, handle.name)
