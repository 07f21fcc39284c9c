"""The settle-exactly-once core (``casare_workers._core._outcome``), driven directly.

No Qt, no pool, no thread unless the test needs one: what tasks and long jobs share is
checked here on its own.
"""

from __future__ import annotations

import gc
import logging
import threading
from concurrent.futures import CancelledError
from typing import Any

import pytest

from casare_workers import TaskCancelledError, TaskState
from casare_workers._core._outcome import Outcome


class _Probe(Outcome[Any]):
    """An Outcome whose hooks record what the core calls, in order."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__(7, "probe", threading.Lock())
        self.calls: list[tuple[str, object]] = []

    def cancel(self, *, reason: str = "cancelled") -> bool:
        return self._settle(TaskState.CANCELLED, None, None, reason)

    def _settled_locked(self, previous: TaskState, state: TaskState) -> None:
        assert self._lock.locked()
        self.calls.append(("locked", (previous, state)))

    def _after_settle(self, previous: TaskState, state: TaskState, stop: bool) -> None:
        self.calls.append(("after", (state, stop, self._cancel_requested)))

    def _hand_over(self) -> None:
        self.calls.append(("hand over", self._state))


def test_the_first_settle_wins_and_each_hook_runs_once_in_order() -> None:
    probe = _Probe()
    assert probe._settle(TaskState.SUCCEEDED, 42, None)
    assert not probe._settle(TaskState.FAILED, None, ValueError("late"))
    assert not probe.cancel()
    assert probe.state is TaskState.SUCCEEDED
    assert probe.done()
    assert probe.calls == [
        ("locked", (TaskState.PENDING, TaskState.SUCCEEDED)),
        ("after", (TaskState.SUCCEEDED, False, False)),
        ("hand over", TaskState.SUCCEEDED),
    ]
    assert probe._outcome(0) == 42


def test_a_cancel_records_its_reason_then_asks_the_work_to_stop() -> None:
    probe = _Probe()
    event = probe._cancel_event()
    assert not event.is_set()
    assert probe.cancel(reason="superseded")
    assert probe.cancel_reason == "superseded"
    assert event.is_set()
    # The outcome was decided before the stop request: the hook already sees both.
    assert ("after", (TaskState.CANCELLED, False, True)) in probe.calls
    with pytest.raises(TaskCancelledError, match="superseded"):
        probe._outcome(0)


def test_stop_asks_the_work_to_stop_with_another_outcome() -> None:
    probe = _Probe()
    probe._settle(TaskState.FAILED, None, TimeoutError("too long"), stop=True)
    assert probe._cancel_requested
    assert probe._cancel_event().is_set()  # made after the stop: set at once
    assert ("after", (TaskState.FAILED, True, True)) in probe.calls


def test_blocking_access_waits_for_the_settle_from_another_thread() -> None:
    probe = _Probe()
    assert not probe._wait_done(0)
    with pytest.raises(TimeoutError, match="did not end within 0"):
        probe._outcome(0)
    settle = threading.Timer(0, probe._settle, (TaskState.FAILED, None, KeyError("k")))
    settle.start()
    with pytest.raises(KeyError):
        probe._outcome(10)
    settle.join()
    assert isinstance(probe._exception(0), KeyError)


def test_done_callbacks_get_the_outcome_and_one_that_raises_cannot_strand_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = _Probe()
    seen: list[object] = []

    def interrupt(_source: object) -> None:
        raise KeyboardInterrupt

    probe.add_done_callback(interrupt)
    probe.add_done_callback(seen.append)
    with caplog.at_level(logging.ERROR, logger="casare_workers"):
        assert probe._settle(TaskState.SUCCEEDED, 1, None)
    assert seen == [probe]
    assert probe.calls[-1] == ("hand over", TaskState.SUCCEEDED)
    assert any(isinstance(r.exc_info[1], KeyboardInterrupt) for r in caplog.records if r.exc_info)
    late: list[object] = []
    probe.add_done_callback(late.append)  # after the settle: called at once
    assert late == [probe]


def test_the_future_view_mirrors_the_outcome_and_forgets_its_source() -> None:
    probe = _Probe()
    future = probe.future
    assert future is probe.future
    assert not future.running()
    probe._state = TaskState.RUNNING
    assert future.running()
    probe._settle(TaskState.SUCCEEDED, "done", None)
    assert future.result(0) == "done"
    assert not future.running()
    assert future._source is None  # type: ignore[attr-defined]  # no cycle left


def test_cancelling_the_future_view_cancels_the_source() -> None:
    probe = _Probe()
    future = probe.future
    assert future.cancel()
    assert probe.cancelled()
    with pytest.raises(CancelledError):
        future.result(0)


def test_a_failure_nobody_retrieved_is_logged_when_the_object_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="casare_workers.unretrieved"):
        probe = _Probe()
        probe._settle(TaskState.FAILED, None, OSError("disk full"))
        probe._note_unretrieved()
        del probe
        gc.collect()
        read = _Probe()
        read._settle(TaskState.FAILED, None, OSError("read later"))
        read._note_unretrieved()
        with pytest.raises(OSError, match="read later"):
            read._outcome(0)
        del read
        gc.collect()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "task 'probe' failed and nothing retrieved its exception" in messages[0]
    assert messages[0].endswith("OSError: disk full")


def test_the_blocking_hook_can_refuse_a_wait() -> None:
    class Refusing(_Probe):
        __slots__ = ()

        def _check_blocking(self, timeout: float | None) -> None:
            if timeout is None:
                raise RuntimeError("would freeze")

    probe = Refusing()
    with pytest.raises(RuntimeError, match="would freeze"):
        probe._wait_done(None)
    assert not probe._wait_done(0)
