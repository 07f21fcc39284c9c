from __future__ import annotations

import threading
from typing import Any

import pytest

from casare_workers import ConfigurationError, TaskCancelledError, TaskState, WorkerManager
from casare_workers.pytest_plugin import wait_for_handle


def test_map_returns_results_in_order_with_aggregate_progress(manager: WorkerManager) -> None:
    handle = manager.map(lambda x: x * x, range(20_000))
    progress: list[tuple[int, int]] = []
    handle.signals.progress.connect(lambda done, total: progress.append((done, total)))
    assert wait_for_handle(handle) == [x * x for x in range(20_000)]
    assert progress[-1] == (20_000, 20_000)
    assert all(total == 20_000 for _, total in progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert handle.total == 20_000


def test_map_groups_sub_millisecond_items_into_chunks(manager: WorkerManager) -> None:
    handle = manager.map(abs, range(20_000))
    wait_for_handle(handle)
    assert handle.chunks < 2_000  # far fewer hand-offs than items


def test_map_with_slow_items_keeps_them_spread_over_workers(qapp: Any) -> None:
    barrier = threading.Barrier(3, timeout=5)

    def item(x: int) -> int:
        if x < 3:
            barrier.wait()  # the first three items must run at the same time
        return x

    with WorkerManager(pools={"io": 3}) as manager:
        handle = manager.map(item, range(9))
        assert wait_for_handle(handle) == list(range(9))


def test_map_error_names_the_item(manager: WorkerManager) -> None:
    def parse(text: str) -> int:
        return int(text)

    handle = manager.map(parse, ["1", "2", "three", "4"], chunksize=1)
    with pytest.raises(ValueError, match="three") as info:
        wait_for_handle(handle)
    assert any("item 2 of map(" in note for note in info.value.__notes__)
    assert handle.state is TaskState.FAILED


def test_map_cancel_stops_between_chunks(qapp: Any, make_gate: Any) -> None:
    started, release = make_gate(), make_gate()
    seen: list[int] = []

    def item(x: int) -> int:
        seen.append(x)
        if x == 0:
            started.open()
            release.wait()
        return x

    with WorkerManager(pools={"io": 1}) as manager:
        handle = manager.map(item, range(1000), chunksize=1)
        started.wait()
        handle.cancel()
        release.open()
        with pytest.raises(TaskCancelledError):
            wait_for_handle(handle)
        assert manager.shutdown(5).clean
    assert seen == [0]


def test_map_of_nothing_succeeds_with_empty_list(manager: WorkerManager) -> None:
    handle = manager.map(abs, [])
    events: list[str] = []
    handle.signals.finished.connect(lambda: events.append("finished"))
    assert wait_for_handle(handle) == []
    assert events == ["finished"]


@pytest.mark.parametrize("chunksize", [0, -1, 1.5, True])
def test_map_rejects_bad_chunksize(manager: WorkerManager, chunksize: Any) -> None:
    with pytest.raises(ConfigurationError, match="chunksize"):
        manager.map(abs, [1], chunksize=chunksize)


def test_map_rejects_non_iterable(manager: WorkerManager) -> None:
    with pytest.raises(TypeError, match="iterable"):
        manager.map(abs, 5)  # type: ignore[arg-type]


def test_map_counts_as_one_task(manager: WorkerManager) -> None:
    # The "cpu" pool spawns its worker process first: slow on a loaded machine.
    wait_for_handle(manager.options(pool="cpu").map(abs, range(100)), 60)
    stats = manager.statistics()["cpu"]
    assert stats.submitted == stats.succeeded == 1


@pytest.mark.slow
def test_many_small_maps_log_no_internal_error(
    qapp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner that starts after its map has ended just leaves: no error without an error.

    20 000 maps of 4 items on 4 threads: each map has 4 runners, and the last of them
    often starts after the others finished it.
    """
    with WorkerManager(pools={"io": 4}) as manager:
        handles = [manager.map(abs, [-1, -2, -3, -4]) for _ in range(20_000)]
        assert manager.wait_for_done(120)
    assert all(h.result(0) == [1, 2, 3, 4] for h in handles)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


def test_map_iteration_interface_reports_each_finished_chunk(qapp: Any, make_gate: Any) -> None:
    """What ``async for`` reads: chunk hooks on the runner's thread, ranges, result slices."""
    start, first_chunk, release = make_gate(), make_gate(), make_gate()
    hook_threads: list[str] = []

    def item(x: int) -> int:
        if x == 0:
            start.wait()  # no chunk finishes before the hook is in place
        if x == 2:
            release.wait()  # the second chunk is held while the first is inspected
        return x * 10

    def hook() -> None:
        hook_threads.append(threading.current_thread().name)
        first_chunk.open()

    with WorkerManager(pools={"io": 1}) as manager:
        handle = manager.map(item, range(4), chunksize=2)
        handle.add_chunk_hook(hook)
        start.open()
        first_chunk.wait()
        handle.remove_chunk_hook(hook)
        assert handle.finished_ranges() == ([(0, 2)], False)
        assert handle.result_slice(0, 2) == [0, 10]
        release.open()
        assert wait_for_handle(handle) == [0, 10, 20, 30]
        assert handle.finished_ranges(1) == ([(2, 4)], True)
        assert handle.result_slice(2, 4) == [20, 30]
    assert len(hook_threads) == 1  # removed before the second chunk finished
    assert hook_threads[0] != threading.main_thread().name
