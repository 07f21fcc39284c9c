"""``map``: one task over many items, chunked automatically, results in order.

Pools must not pay a task's overhead per item for sub-millisecond work.  So ``map``
does not create one task per item: it queues up to ``max_workers`` *runners* that claim
chunks of indices from a shared cursor.  The first chunk is one item; each runner then
sizes its next chunk so that it takes about :data:`TARGET_CHUNK_SECONDS`, growing at most
4x per step and never taking more than its share of what is left (so the tail stays
balanced).  Progress is ``(items done, total)`` through the usual coalescing.

The whole map is one task: one ``result`` (the list, in input order), one ``error``
(the first exception, with a note naming the item index), or ``cancelled``.
Cancellation is checked between chunks.

Each finished chunk's index range is recorded (one append under the lock the runner
already holds; a pool that ships chunks to processes or Dask records them through
:meth:`MapHandle.store_results`), so ``async for index, value in handle`` can yield
results as chunks arrive, even when the iteration starts late.  The asyncio bridge
follows a map only through its public iteration interface::

    a chunk finishes ─► its range recorded ─► chunk hooks run (add_chunk_hook)
                                                   │  (the runner's thread)
    async for ◄─ result_slice(start, end) ◄─ finished_ranges(since) ◄─ woken up
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from PySide6.QtCore import QObject

from .._core._handle import TaskHandle
from .._core._state import TaskState
from .._engine import DeliveryEngine
from .._report import report_callback_exception

__all__ = ("MapHandle", "MapRunner")

R = TypeVar("R")

#: Wall time a chunk aims for: short enough for prompt cancellation and balance,
#: long enough that per-chunk costs (locking, progress) vanish.
TARGET_CHUNK_SECONDS = 0.002

_RUNNING = TaskState.RUNNING


class MapRunner:
    """One pool item of a map; several run the same map concurrently."""

    __slots__ = ("_task",)

    def __init__(self, task: MapHandle[Any]) -> None:
        self._task = task

    @property
    def task(self) -> MapHandle[Any]:
        """The map this runner works for."""
        return self._task

    def execute(self) -> None:
        """Run chunks of the map on this (pool) thread until none is left."""
        self._task._run_in_context()


class MapHandle(TaskHandle[list[R]]):
    """The handle of a ``map``: a :class:`TaskHandle` whose result is the list of results.

    ``progress`` reports ``(items done, total)``.
    """

    __slots__ = (
        "_chunk",
        "_chunk_hooks",
        "_chunks",
        "_completed",
        "_fixed_chunk",
        "_items",
        "_n",
        "_next",
        "_per_item",
        "_ranges",
        "_results",
        "_runners",
    )

    def __init__(
        self,
        fn: Callable[[Any], R],
        items: list[Any],
        *,
        engine: DeliveryEngine,
        name: str | None = None,
        chunksize: int | None = None,
    ) -> None:
        super().__init__(cast(Callable[..., list[R]], fn), (), {}, engine, name)
        self._items: list[Any] | None = items
        self._n = len(items)
        self._results: list[Any] = [None] * self._n
        self._next = 0
        self._chunks = 0
        self._completed = 0
        self._fixed_chunk = chunksize is not None
        self._chunk = chunksize or 1
        self._per_item: float | None = None
        self._runners = 1
        #: ``(start, end)`` of every finished chunk, in completion order.
        self._ranges: list[tuple[int, int]] = []
        #: Called (no arguments, on the thread that finished it) after each chunk;
        #: replaced, never mutated, so runners read it without the lock.
        self._chunk_hooks: tuple[Callable[[], object], ...] = ()

    @property
    def total(self) -> int:
        """Number of items."""
        return self._n

    @property
    def chunks(self) -> int:
        """How many chunks the items were split into so far (shows the batching at work)."""
        return self._chunks

    def __aiter__(self) -> AsyncIterator[tuple[int, R]]:
        """``async for index, value in handle``: results as their chunks finish.

        Pairs come in completion order (each chunk's items in input order); ``index``
        is the item's position in the input.  A failed map raises its exception after
        the results that arrived before it; a cancelled one raises
        ``asyncio.CancelledError``.  Cancelling the iterating coroutine cancels the map.
        """
        # The bridge builds on the core, not the other way round: imported on use.
        from .._bridge._mapiter import iterate_map

        return iterate_map(self)

    def _release_inputs(self) -> None:
        """Drop the items when the map ends (a runner's thread) unless a QObject is one.

        Same rule as a task's arguments: the last reference to a QObject is dropped on
        the GUI thread, at delivery; anything else goes as soon as it is not needed.
        """
        items = self._items
        if items is not None and not any(isinstance(item, QObject) for item in items):
            self._items = None
        super()._release_inputs()

    def _release_on_gui_thread(self) -> None:
        self._items = None
        super()._release_on_gui_thread()

    def runners(self, threads: int) -> list[MapRunner]:
        """The pool items that run this map on up to ``threads`` threads at once.

        For a thread pool, once it has queued the map (``mark_queued``): it queues the
        runners it gets.  A map of no items ends here, with ``[]``, and gets none.
        """
        if self._n == 0:
            self.succeed([])
            return []
        self._runners = max(1, min(threads, self._n))
        return [MapRunner(self) for _ in range(self._runners)]

    def execute(self) -> None:  # pragma: no cover - a map is run by its runners
        self._run_in_context()

    def _run_in_context(self) -> None:
        # Runners of one map run at once, and a Context can be entered by only one
        # thread at a time: each runner enters its own copy of the submitter's context.
        self._context.copy().run(self._run_chunks)

    # -- the chunk interface, for pools that ship chunks elsewhere (processes, Dask) ------

    @property
    def items(self) -> list[Any]:
        """The input items (empty once the map ended and let go of them)."""
        return self._items or []

    @property
    def fixed_chunksize(self) -> int | None:
        """The chunk size given to ``map``, or None to let the pool choose."""
        return self._chunk if self._fixed_chunk else None

    def set_chunks(self, count: int) -> None:
        """The pool cut the items into ``count`` chunks (shown by :attr:`chunks`)."""
        self._chunks = count

    def store_results(self, start: int, values: list[Any]) -> None:
        """Put the results of the chunk that begins at item ``start`` in place.

        The chunk then counts as finished: its range is recorded for
        :meth:`finished_ranges` and the chunk hooks run, on this thread.
        """
        end = start + len(values)
        self._results[start:end] = values
        with self._lock:
            self._ranges.append((start, end))
        self._run_chunk_hooks()

    def finish(self) -> bool:
        """Every chunk is stored: report full progress and end with the results."""
        self._release_inputs()
        self.report_progress(self._n, self._n)
        return self.succeed(self._results)

    # -- following the results as chunks finish (``async for``, the asyncio bridge) --------

    def add_chunk_hook(self, hook: Callable[[], object]) -> None:
        """Call ``hook()`` after each finished chunk, until :meth:`remove_chunk_hook`.

        It runs on the thread that finished the chunk (a runner of a thread pool, or
        the thread that receives a chunk back from a process or Dask), so it must be
        quick and thread-safe: typically it wakes up whoever reads
        :meth:`finished_ranges`.  An exception it raises is reported, never raised
        into the map.  Thread-safe.
        """
        with self._lock:
            self._chunk_hooks = (*self._chunk_hooks, hook)

    def remove_chunk_hook(self, hook: Callable[[], object]) -> None:
        """Stop calling ``hook`` (and any hook equal to it); nothing if it is not there."""
        with self._lock:
            self._chunk_hooks = tuple(h for h in self._chunk_hooks if h != hook)

    def finished_ranges(self, since: int = 0) -> tuple[list[tuple[int, int]], bool]:
        """The chunks finished so far and whether the map has ended, read together.

        Args:
            since: How many ranges the caller has already seen.

        Returns:
            ``(ranges, ended)``: the ``(start, end)`` item ranges of the chunks
            finished after the first ``since``, in completion order, and ``done()`` at
            that same moment.  A map that ended by succeeding has every range in the
            ranges seen together with ``ended``; :meth:`result_slice` gives the values.
        """
        with self._lock:
            return self._ranges[since:], self._finished

    def result_slice(self, start: int, end: int) -> list[R]:
        """The results of items ``start`` to ``end`` (a range from :meth:`finished_ranges`)."""
        return cast("list[R]", self._results[start:end])

    def _run_chunk_hooks(self) -> None:
        # Replaced, never mutated (add/remove_chunk_hook): read here without the lock.
        for hook in self._chunk_hooks:
            try:
                hook()
            except BaseException as exc:  # a faulty hook must not strand the map
                report_callback_exception(f"a chunk hook of map({self.name})", exc)

    def _next_chunk(self) -> int:
        # Called with the lock held.
        if self._fixed_chunk:
            return self._chunk
        per_item = self._per_item
        if per_item is None:
            return 1
        ideal = int(TARGET_CHUNK_SECONDS / per_item) if per_item > 0 else 1 << 20
        remaining = self._n - self._next
        share = max(1, remaining // self._runners)
        size = max(1, min(ideal, self._chunk * 4, share))
        self._chunk = size
        return size

    def _run_chunks(self) -> None:
        lock = self._lock
        # The first runner starts the task; the others join it while it runs.
        if not self.begin() and self._state is not _RUNNING:
            return
        fn = self._fn
        items = self._items
        if fn is None or items is None:  # a late runner: the map ended meanwhile
            return
        results = self._results
        n = self._n
        clock = time.perf_counter
        while True:
            with lock:
                if self._state is not _RUNNING:
                    return
                start = self._next
                if start >= n:
                    return
                end = min(n, start + self._next_chunk())
                self._next = end
                self._chunks += 1
            index = start
            began = clock()
            try:
                for index in range(start, end):
                    results[index] = fn(items[index])
            except BaseException as exc:
                exc.add_note(f"raised by item {index} of map({self.name})")
                self._release_inputs()
                self.fail(exc)
                return
            spent = clock() - began
            with lock:
                self._completed += end - start
                done = self._completed
                per_item = spent / (end - start)
                previous = self._per_item
                self._per_item = per_item if previous is None else (previous + per_item) / 2
                self._ranges.append((start, end))
            self.report_progress(done, n)
            self._run_chunk_hooks()
            if done == n:
                self._release_inputs()
                self.succeed(results)
                return
