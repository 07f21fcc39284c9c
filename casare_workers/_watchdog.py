"""Enforces per-task timeouts from one lazily started daemon thread per manager."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ._engine import report_callback_exception

if TYPE_CHECKING:
    from ._task import TaskHandle

__all__ = ("Watchdog",)


class Watchdog:
    """A heap of deadlines served by one thread; entries hold weak references.

    The thread starts with the first timeout and sleeps on a condition until the
    earliest deadline, so tasks without a timeout cost nothing.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, weakref.ref[TaskHandle[Any]]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, task: TaskHandle[Any], timeout: float) -> None:
        """Call ``task._timed_out()`` ``timeout`` seconds from now unless it ended."""
        deadline = time.monotonic() + timeout
        with self._cv:
            if self._stopped:
                return
            heapq.heappush(self._heap, (deadline, next(self._seq), weakref.ref(task)))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"casare-{self._name}-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][0] == deadline:
                self._cv.notify()

    def stop(self) -> None:
        """Stop the thread (pending deadlines are dropped) and join it briefly."""
        with self._cv:
            self._stopped = True
            self._heap.clear()
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped:
                    if not self._heap:
                        self._cv.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cv.wait(wait)
                if self._stopped:
                    return
                _, _, ref = heapq.heappop(self._heap)
            task = ref()
            if task is not None:
                try:
                    task._timed_out()
                except BaseException as exc:  # never let one task stop the watchdog
                    report_callback_exception("the timeout watchdog", exc)
            del task
