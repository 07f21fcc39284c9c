"""Enforces per-task timeouts from one lazily started daemon thread per manager."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from ._report import report_callback_exception

__all__ = ("Watchdog", "Watched")


class Watched(Protocol):
    """What a watchdog watches: a task, or a ``LoopThread`` call."""

    def time_out(self) -> None:
        """The deadline passed (runs on the watchdog's thread)."""

    def when_done(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn`` once when it ends (at once if it has ended)."""


# One deadline: [deadline, sequence, weak reference to its target, or None once dropped].
# A list, not a tuple, so that dropping it is one store; the unique sequence number
# keeps heap comparisons from ever reaching the reference.
_Entry = list[Any]


class Watchdog:
    """A heap of deadlines served by one thread; entries hold weak references.

    The thread starts with the first timeout and sleeps on a condition until the
    earliest deadline, so tasks without a timeout cost nothing.  An entry is dropped as
    soon as its target ends (most tasks end long before their timeout), and the heap is
    rebuilt without the dropped entries once they are half of it: a finished task's
    entry is not kept until its deadline.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._heap: list[_Entry] = []
        self._dropped = 0  # entries in the heap whose target has ended
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, target: Watched, timeout: float) -> None:
        """Call ``target.time_out()`` ``timeout`` seconds from now unless it ended."""
        deadline = time.monotonic() + timeout
        entry: _Entry = [deadline, next(self._seq), weakref.ref(target)]
        with self._cv:
            if self._stopped:
                return
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"casare-{self._name}-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:
                self._cv.notify()
        target.when_done(lambda _target: self._drop(entry))

    def _drop(self, entry: _Entry) -> None:
        # Runs on the thread that ended the target.
        with self._cv:
            if entry[2] is None:
                return
            entry[2] = None
            self._dropped += 1
            heap = self._heap
            if self._dropped > len(heap) // 2:  # amortised: O(1) per entry
                heap[:] = [live for live in heap if live[2] is not None]
                heapq.heapify(heap)
                self._dropped = 0

    def stop(self) -> None:
        """Stop the thread (pending deadlines are dropped) and join it briefly."""
        with self._cv:
            self._stopped = True
            self._heap.clear()
            self._dropped = 0
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
                entry = heapq.heappop(self._heap)
                ref = entry[2]
                if ref is None:
                    self._dropped -= 1
                    continue
                entry[2] = None  # due now: a late done callback has nothing to drop
            task = ref()
            if task is not None:
                try:
                    task.time_out()
                except BaseException as exc:  # never let one task stop the watchdog
                    report_callback_exception("the timeout watchdog", exc)
            del task
