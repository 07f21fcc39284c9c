"""The Dask pool against real ``distributed.LocalCluster`` s on loopback.

Two module-scoped clusters keep the suite fast: a threads cluster (workers in this
process) and a processes cluster (worker processes with nannies, for the faults).
Task functions live in ``tests/dask_tasks.py``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from casare_workers import (
    ClusterUnavailableError,
    ConfigurationError,
    ManagerShutdownError,
    PoolConfig,
    SerializationError,
    TaskError,
    TaskState,
    TaskTimeoutError,
    WorkerManager,
)
from casare_workers.pytest_plugin import AsyncRunner, assert_gui_thread, wait_for_handle
from tests import dask_tasks as tasks

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

WAIT = 30.0
WAIT_MS = int(WAIT * 1000)

pytestmark = [
    # Dask's own shutdown chatter (closing comms, a nanny restarting a killed worker)
    # is not ours to fail on.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:distributed"),
]


@pytest.fixture(scope="module")
def threads_cluster() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=4,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=":0",  # any free port (8787 may be taken)
        scheduler_kwargs={"dashboard": False},
    )
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def process_cluster() -> Iterator[Any]:
    # One retry: a task whose worker dies once is re-run; twice, it ends KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port (8787 may be taken)
        )
    yield cluster
    cluster.close()
    assert multiprocessing.active_children() == []  # no worker or nanny survives


@pytest.fixture
def make_manager(qapp: Any) -> Iterator[Callable[..., WorkerManager]]:
    """Managers with a ``"dask"`` pool; each must end with no task or thread left."""
    made: list[WorkerManager] = []

    def make(workers: int = 4, **config: Any) -> WorkerManager:
        manager = WorkerManager(pools={"dask": PoolConfig(workers, kind="dask", **config)})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        report = manager.shutdown(WAIT)
        assert report.still_running == ()
        assert manager.threads() == []
        assert manager.live_tasks() == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the API, on both kinds of cluster ---------------------------------------------------


@pytest.fixture(params=["threads", "process"])
def cluster(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_cluster")


def test_dask_task_runs_on_the_cluster_and_signals_on_the_gui(
    make_manager: Callable[..., WorkerManager], cluster: Any
) -> None:
    manager = make_manager(address=cluster.scheduler_address)
    handle = manager.options(pool="dask").submit(tasks.worker_address)
    events: list[str] = []

    def record(name: str) -> Callable[..., None]:
        def slot(*_: object) -> None:
            assert_gui_thread()
            events.append(name)

        return slot

    for name in ("started", "result", "finished"):
        getattr(handle.signals, name).connect(record(name))
    address = wait_for_handle(handle, WAIT)
    assert address in cluster.scheduler_info["workers"]
    assert events == ["started", "result", "finished"]
    assert manager.statistics()["dask"].workers == len(cluster.scheduler_info["workers"])


def test_dask_error_arrives_unchanged(
    make_manager: Callable[..., WorkerManager], cluster: Any
) -> None:
    manager = make_manager(address=cluster.scheduler_address)
    handle = manager.options(pool="dask").submit(tasks.raise_value_error, "remote bad")
    errors: list[TaskError] = []
    handle.signals.error.connect(errors.append)
    with pytest.raises(ValueError, match="remote bad"):
        wait_for_handle(handle, WAIT)
    assert isinstance(errors[0].exception, ValueError)
    assert "raise_value_error" in errors[0].traceback  # Dask keeps the remote traceback


def test_dask_progress_and_status_reach_the_gui_coalesced(
    make_manager: Callable[..., WorkerManager], cluster: Any
) -> None:
    manager = make_manager(address=cluster.scheduler_address)
    handle = manager.options(pool="dask").submit(tasks.count_to, 50_000)
    progress: list[tuple[int, int]] = []
    handle.signals.progress.connect(lambda c, t: progress.append((c, t)))
    assert wait_for_handle(handle, WAIT) == 50_000
    assert progress[-1] == (50_000, 50_000)
    assert len(progress) < 1_000
    assert handle.status_text == "counted"


def test_dask_map_chunks_and_keeps_order(
    make_manager: Callable[..., WorkerManager], cluster: Any
) -> None:
    manager = make_manager(2, address=cluster.scheduler_address)
    handle = manager.options(pool="dask").map(tasks.square, range(500))
    assert wait_for_handle(handle, WAIT) == [x * x for x in range(500)]
    assert handle.chunks == 2 * 4
    assert handle.progress_value == (500, 500)


def test_dask_map_async_iteration_yields_every_result(
    make_manager: Callable[..., WorkerManager], threads_cluster: Any, qasync_loop: AsyncRunner
) -> None:
    manager = make_manager(2, address=threads_cluster.scheduler_address)

    async def main() -> list[tuple[int, int]]:
        handle = manager.options(pool="dask").map(tasks.square, range(40), chunksize=10)
        return [pair async for pair in handle]

    assert sorted(qasync_loop.run(main(), timeout=WAIT)) == [(x, x * x) for x in range(40)]


# -- threads cluster: cancellation, clients, limits -----------------------------------


def test_dask_cancel_reaches_the_running_task(
    make_manager: Callable[..., WorkerManager], threads_cluster: Any, qtbot: QtBot
) -> None:
    observed = tasks.seen["cancel_observed"]
    observed.clear()
    manager = make_manager(address=threads_cluster.scheduler_address)
    handle = manager.options(pool="dask").submit(tasks.wait_for_cancel)
    qtbot.waitUntil(lambda: handle.status_text == "waiting", timeout=WAIT_MS)
    assert handle.cancel()
    assert handle.state is TaskState.CANCELLED
    assert observed.wait(WAIT)  # ctx.wait on the worker woke up with True


def test_dask_timeout_fails_the_task_and_cancels_it_remotely(
    make_manager: Callable[..., WorkerManager], threads_cluster: Any
) -> None:
    observed = tasks.seen["cancel_observed"]
    observed.clear()
    manager = make_manager(address=threads_cluster.scheduler_address)
    handle = manager.options(pool="dask", timeout=0.3).submit(tasks.wait_for_cancel)
    with pytest.raises(TaskTimeoutError, match="cancelled in Dask"):
        wait_for_handle(handle, WAIT)
    assert observed.wait(WAIT)


def test_dask_service_thread_failure_ends_every_task_and_refuses_new_work(
    make_manager: Callable[..., WorkerManager],
    threads_cluster: Any,
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault injection: a bug in the service thread must not leave tasks waiting for ever."""
    from casare_workers._pools._daskpool import DaskPool

    observed = tasks.seen["cancel_observed"]
    observed.clear()
    manager = make_manager(1, address=threads_cluster.scheduler_address)
    pool = manager._core.pools["dask"]
    assert isinstance(pool, DaskPool)
    opts = manager.options(pool="dask")
    running = opts.submit(tasks.wait_for_cancel)
    qtbot.waitUntil(lambda: running.status_text == "waiting", timeout=WAIT_MS)
    queued = opts.submit(tasks.square, 3)

    def broken() -> None:
        raise RuntimeError("a bug in the service thread")

    monkeypatch.setattr(pool, "_dispatch", broken)
    pool._wake()
    for handle in (running, queued):
        with pytest.raises(ClusterUnavailableError, match="service thread failed") as info:
            wait_for_handle(handle, WAIT)
        assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ManagerShutdownError, match="stopped working after an internal error"):
        opts.submit(tasks.square, 4)
    assert observed.wait(WAIT)  # the task on the cluster was told to stop
    assert "the service thread failed" in caplog.text


def test_dask_pool_uses_an_existing_client_and_leaves_it_open(
    make_manager: Callable[..., WorkerManager], threads_cluster: Any
) -> None:
    with distributed.Client(threads_cluster, set_as_default=False) as client:
        manager = make_manager(client=client)
        assert wait_for_handle(manager.options(pool="dask").submit(tasks.square, 9), WAIT) == 81
        manager.shutdown(WAIT)
        assert client.status == "running"  # the pool does not own it


def test_dask_max_workers_bounds_the_tasks_in_flight(
    make_manager: Callable[..., WorkerManager], threads_cluster: Any, qtbot: QtBot
) -> None:
    manager = make_manager(1, address=threads_cluster.scheduler_address)
    opts = manager.options(pool="dask")
    first = opts.submit(tasks.wait_for_cancel)
    second = opts.submit(tasks.square, 3)
    qtbot.waitUntil(lambda: first.status_text == "waiting", timeout=WAIT_MS)
    assert second.state is TaskState.QUEUED  # held back here, not flooding the cluster
    first.cancel()
    assert wait_for_handle(second, WAIT) == 9


def test_dask_submit_refuses_what_cannot_be_pickled(
    make_manager: Callable[..., WorkerManager], threads_cluster: Any
) -> None:
    import threading

    manager = make_manager(address=threads_cluster.scheduler_address)
    with pytest.raises(SerializationError, match=r"argument 0 \(<unlocked _thread.lock"):
        manager.options(pool="dask").submit(tasks.square, threading.Lock())
    assert manager.statistics()["dask"].submitted == 0
    # cloudpickle (Dask's own choice) does carry lambdas, by value.
    assert wait_for_handle(manager.options(pool="dask").submit(lambda: 42), WAIT) == 42


def test_dask_config_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of address"):
        PoolConfig(2, kind="dask")
    with pytest.raises(ConfigurationError, match="kind='dask' pools only"):
        PoolConfig(2, address="tcp://127.0.0.1:8786")


def test_dask_pool_refuses_an_asynchronous_client(
    make_manager: Callable[..., WorkerManager],
) -> None:
    with pytest.raises(ConfigurationError, match=r"distributed\.Client"):
        make_manager(client=object())


# -- faults -------------------------------------------------------------------------------


def test_dask_scheduler_unreachable_at_submit_is_a_clear_error(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    manager = make_manager(address=address, connect_timeout=0.2)
    # Submitted while the pool is still connecting: it must fail, not wait for ever.
    early = manager.options(pool="dask").submit(tasks.square, 2)
    with pytest.raises(ClusterUnavailableError, match="never reached the cluster"):
        wait_for_handle(early, WAIT)
    # Once the pool knows, submit itself refuses: nothing is queued into the void.
    before = manager.statistics()["dask"].submitted
    with pytest.raises(
        ClusterUnavailableError, match=f"cannot reach the Dask scheduler at {address}"
    ):
        manager.options(pool="dask").submit(tasks.square, 3)
    assert manager.statistics()["dask"].submitted == before
    assert manager.live_tasks() == []
    # The refused submit started a new attempt; a shutdown would not wait for it (and
    # would report it), so let it fail first for the fixture's clean report.
    pool: Any = manager._core.pools["dask"]
    qtbot.waitUntil(
        lambda: pool._status == "unavailable" and pool.still_running() == [], timeout=WAIT_MS
    )


@contextlib.contextmanager
def silent_scheduler() -> Iterator[str]:
    """An address that accepts connections (the kernel's backlog) and never answers.

    Dask's own ``timeout`` does not cover this: its handshake waits for ever.  Closing
    the socket on leaving ends any attempt still waiting.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"tcp://127.0.0.1:{silent.getsockname()[1]}"


def test_dask_scheduler_that_never_answers_fails_the_task_after_connect_timeout(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot
) -> None:
    with silent_scheduler() as address:
        manager = make_manager(address=address, connect_timeout=0.5)
        handle = manager.options(pool="dask").submit(tasks.square, 2)
        with pytest.raises(ClusterUnavailableError, match="no answer within the connect_timeout"):
            wait_for_handle(handle, WAIT)
    # The attempt given up on ends once the peer goes away: no thread stays behind.
    pool = manager._core.pools["dask"]
    qtbot.waitUntil(lambda: pool.still_running() == [], timeout=WAIT_MS)


def test_dask_shutdown_does_not_wait_for_a_scheduler_that_never_answers(
    qapp: Any, qtbot: QtBot
) -> None:
    with silent_scheduler() as address:
        manager = WorkerManager(
            pools={"dask": PoolConfig(2, kind="dask", address=address, connect_timeout=5)}
        )
        pool = manager._core.pools["dask"]
        qtbot.waitUntil(lambda: pool.still_running() != [], timeout=WAIT_MS)  # connecting
        report = manager.shutdown(0.5)
        # Not reported clean: the attempt is Dask's and goes on, on a daemon thread.
        assert report.still_running == (f"connecting to the Dask scheduler at {address}",)
        assert report.elapsed < 5  # a hang guard: it did not wait for connect_timeout
    qtbot.waitUntil(lambda: manager.threads() == [], timeout=WAIT_MS)
    assert manager.live_tasks() == []


@pytest.mark.slow
def test_dask_worker_killed_mid_task_is_retried_elsewhere(
    make_manager: Callable[..., WorkerManager], process_cluster: Any, tmp_path: Path
) -> None:
    manager = make_manager(address=process_cluster.scheduler_address)
    marker = tmp_path / "died-once"
    handle = manager.options(pool="dask").submit(tasks.die_once, str(marker))
    assert wait_for_handle(handle, 60) == "survived"
    assert marker.exists()  # the first attempt really did kill its worker


@pytest.mark.slow
def test_dask_worker_killed_every_time_ends_with_killed_worker(
    make_manager: Callable[..., WorkerManager], process_cluster: Any
) -> None:
    manager = make_manager(address=process_cluster.scheduler_address)
    handle = manager.options(pool="dask").submit(tasks.always_die)
    with pytest.raises(distributed.KilledWorker, match="always_die"):
        wait_for_handle(handle, 60)


def test_dask_cluster_closed_during_shutdown(
    make_manager: Callable[..., WorkerManager], qtbot: QtBot
) -> None:
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=":0",  # any free port (8787 may be taken)
        scheduler_kwargs={"dashboard": False},
    )
    manager = make_manager(address=cluster.scheduler_address, connect_timeout=1)
    opts = manager.options(pool="dask")
    running = [opts.submit(tasks.wait_for_cancel) for _ in range(2)]
    qtbot.waitUntil(lambda: all(h.status_text == "waiting" for h in running), timeout=WAIT_MS)
    cluster.close()
    report = manager.shutdown(5)
    assert report.still_running == ()
    assert manager.threads() == []
    assert all(h.done() for h in running)
    for handle in running:
        assert handle.state in (TaskState.CANCELLED, TaskState.FAILED)
        if handle.state is TaskState.FAILED:
            assert isinstance(handle.exception(0), ClusterUnavailableError)


def test_dask_worker_side_needs_no_casare_workers(tmp_path: Path) -> None:
    """The code shipped to workers runs where casare_workers (and Qt) cannot be imported."""
    from casare_workers._pools import _daskpool, _daskworker

    cloudpickle = _daskpool.cloudpickle

    assert _daskpool.DaskPool is not None  # importing it registers pickling by value
    payload = cloudpickle.dumps((tasks.square, (7,), {}))
    shipped = tmp_path / "shipped.pkl"
    shipped.write_bytes(cloudpickle.dumps((_daskworker.run, _daskworker.run_plain, payload)))
    probe = textwrap.dedent(
        f"""
        import pickle, sys
        sys.modules["casare_workers"] = None  # any import of it now fails
        sys.modules["PySide6"] = None
        run, run_plain, payload = pickle.loads(open({str(shipped)!r}, "rb").read())
        print(run(1, "square", 0, "topic", "cancel", payload)[0], run_plain(payload)[0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip() == b"49 49"
