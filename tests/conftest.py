from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Hang guard for gates: no test waits on a gate longer than this.
GATE_TIMEOUT = 10.0


class Gate:
    """A threading.Event with a hang guard: ``wait()`` fails loudly instead of hanging."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float = GATE_TIMEOUT) -> bool:
        if not self._event.wait(timeout):
            raise TimeoutError("gate was never opened (test bug or deadlock)")
        return True

    def open(self) -> None:
        self._event.set()

    def is_open(self) -> bool:
        return self._event.is_set()


@pytest.fixture
def make_gate() -> Iterator[Callable[[], Gate]]:
    """Make gates; every gate is opened at teardown so no worker stays parked."""
    made: list[Gate] = []

    def make() -> Gate:
        g = Gate()
        made.append(g)
        return g

    yield make
    for g in made:
        g.open()


@pytest.fixture
def gate(make_gate: Callable[[], Gate]) -> Gate:
    return make_gate()


@pytest.fixture(scope="session", autouse=True)
def _collect_garbage_on_gui_thread(qapp: Any) -> Iterator[None]:
    """The suite runs as an application should (see ``casare_workers._gc``).

    Tests that need the automatic collector off (reference-counting checks) disable it
    themselves; tests of the collector itself live in ``test_gc.py``.
    """
    from casare_workers import _gc, collect_garbage_on_gui_thread

    collect_garbage_on_gui_thread()
    yield
    active = _gc._active
    if active is not None:
        active.stop()


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """No cyclic collection at all during the test: only reference counting frees objects.

    For tests proving that an object is not kept by a reference cycle.
    """
    from casare_workers import _gc, collect_garbage_on_gui_thread

    active = _gc._active
    if active is not None:
        active.stop()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        collect_garbage_on_gui_thread()
