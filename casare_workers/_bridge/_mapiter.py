"""``async for index, value in map_handle``: a map's results as their chunks finish.

The runners of a map call a chunk hook after each finished chunk (on their own
threads); the iterator's hook wakes the iterating coroutine at most once per turn of
the loop (through the delivery engine on the GUI thread's Qt loop, otherwise
``call_soon_threadsafe``), and the coroutine then takes every range finished so far.
An iteration started late replays the chunks that finished before it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

from .._core._state import TaskState
from ._await import cancelled_error, wake
from ._loops import note_loop, running_loop

if TYPE_CHECKING:
    from .._map import MapHandle

__all__ = ("iterate_map",)

R = TypeVar("R")

_SUCCEEDED, _CANCELLED = TaskState.SUCCEEDED, TaskState.CANCELLED


class _MapIterator(Generic[R]):
    """``async for index, value in map_handle``: results as their chunks finish."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_cursor",
        "_engine",
        "_future",
        "_handle",
        "_loop",
        "_poked",
        "_qt",
    )

    def __init__(self, handle: MapHandle[R], loop: asyncio.AbstractEventLoop) -> None:
        self._handle = handle
        self._loop = loop
        self._engine = handle._engine
        self._qt = note_loop(loop, self._engine)
        self._buffer: deque[tuple[int, R]] = deque()
        self._cursor = 0
        self._future: asyncio.Future[None] | None = None
        self._poked = False
        with handle._lock:
            handle._chunk_hooks = (*handle._chunk_hooks, self._poke)
        handle.add_done_callback(self._poke_done)

    def __aiter__(self) -> _MapIterator[R]:
        return self

    def _poke(self) -> None:
        """A chunk finished (runs on the runner's thread): wake the iterator once."""
        if self._poked:
            return
        self._poked = True
        if self._qt:
            self._engine.post_item(self)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop was closed: nobody is iterating any more
            pass

    def _poke_done(self, _handle: object) -> None:
        self._poke()

    def _deliver(self) -> None:
        """Runs on the loop's thread (the engine's drain on the GUI thread)."""
        self._poked = False  # before resolving: a later chunk posts its own wake-up
        future = self._future
        if future is not None:
            wake(future)

    def _detach(self) -> None:
        handle = self._handle
        with handle._lock:
            handle._chunk_hooks = tuple(h for h in handle._chunk_hooks if h != self._poke)

    async def __anext__(self) -> tuple[int, R]:
        buffer = self._buffer
        handle = self._handle
        while True:
            if buffer:
                return buffer.popleft()
            # Reading the ranges and creating the future happen with no suspension in
            # between, and _deliver runs on this same thread: no wake-up is lost.
            with handle._lock:
                ranges = handle._ranges
                fresh = ranges[self._cursor :]
                self._cursor = len(ranges)
                finished = handle._finished
            if fresh:
                results = handle._results
                for start, end in fresh:
                    buffer.extend(zip(range(start, end), results[start:end], strict=True))
                continue
            if finished:
                self._detach()
                state = handle._state
                if state is _SUCCEEDED:
                    raise StopAsyncIteration
                if state is _CANCELLED:
                    raise cancelled_error(handle.name, handle.cancel_reason)
                exc = handle._exc
                assert exc is not None
                handle._retrieved()
                raise exc
            future: asyncio.Future[None] = self._loop.create_future()
            self._future = future
            try:
                await future
            except asyncio.CancelledError:
                self._detach()
                handle.cancel(reason="cancelled: the iterating coroutine was cancelled")
                raise
            finally:
                self._future = None


def iterate_map(handle: MapHandle[R]) -> _MapIterator[R]:
    """The body of ``MapHandle.__aiter__``: an async iterator of ``(index, value)``."""
    return _MapIterator(handle, running_loop("async iteration over a map"))
