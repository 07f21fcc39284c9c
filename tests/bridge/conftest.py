"""Fixtures of the bridge's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject

from casare_workers import WorkerManager


@pytest.fixture
def small_manager(qapp: Any) -> Iterator[WorkerManager]:
    """A manager whose io pool has one thread, so tasks can be held in the queue."""
    manager = WorkerManager(pools={"io": 1})
    yield manager
    report = manager.shutdown(5)
    assert report.clean, report


@pytest.fixture
def keep(qapp: Any) -> Iterator[Callable[[Any], Any]]:
    """Register QObjects to delete on the GUI thread at teardown.

    A widget left to Python's cyclic GC (tracebacks and tasks form cycles) could be
    destroyed later on whatever thread runs the collection: a crash in a later test.
    """
    objects: list[QObject] = []

    def keep(obj: Any) -> Any:
        objects.append(obj)
        return obj

    yield keep
    for obj in reversed(objects):
        if shiboken6.isValid(obj):
            shiboken6.delete(obj)
