"""``async for index, value in map_handle``: a map's results as their chunks finish.

The iterator follows the map only through its public iteration interface (a
:class:`ChunkedResults`, which ``MapHandle`` provides)::

    a chunk finishes (any thread) ─► the iterator's chunk hook ─► one wake-up per turn
        (the delivery engine's drain on the GUI thread's Qt loop, else
        call_soon_threadsafe)
    __anext__ (the loop's thread) ─► finished_ranges(cursor) ─► result_slice(start, end)
        ─► (index, value) pairs, then StopAsyncIteration / the map's exception /
           asyncio.CancelledError once the map has ended

An iteration started late replays the chunks that finished before it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from .._core._state import TaskState
from .._engine import get_engine
from ._await import cancelled_error, wake
from ._loops import note_loop, running_loop

__all__ = ("ChunkedResults", "iterate_map")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

_SUCCEEDED, _CANCELLED = TaskState.SUCCEEDED, TaskState.CANCELLED


class ChunkedResults(Protocol[R_co]):
    """What ``async for`` needs of a map (``MapHandle`` provides it).

    A protocol rather than the class: the map imports this module when it is
    iterated, so this module must not import the map.
    """

    @property
    def name(self) -> str:
        """The map's display name."""

    @property
    def cancel_reason(self) -> str | None:
        """Why it was cancelled, if it was."""

    @property
    def state(self) -> TaskState:
        """The map's state."""

    def add_chunk_hook(self, hook: Callable[[], object]) -> None:
        """Call ``hook()`` after each finished chunk (on the thread that finished it)."""

    def remove_chunk_hook(self, hook: Callable[[], object]) -> None:
        """Stop calling ``hook``."""

    def finished_ranges(self, since: int = 0) -> tuple[list[tuple[int, int]], bool]:
        """The ranges finished after the first ``since``, and whether the map ended."""

    def result_slice(self, start: int, end: int) -> Sequence[R_co]:
        """The results of items ``start`` to ``end``."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(map)`` when the map ends (on the thread that ends it)."""

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The map's exception (marks it as seen)."""

    def cancel(self, *, reason: str = "cancelled") -> bool:
        """Cancel the map."""


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

    def __init__(self, handle: ChunkedResults[R], loop: asyncio.AbstractEventLoop) -> None:
        self._handle = handle
        self._loop = loop
        self._engine = get_engine()
        self._qt = note_loop(loop, self._engine)
        self._buffer: deque[tuple[int, R]] = deque()
        self._cursor = 0
        self._future: asyncio.Future[None] | None = None
        self._poked = False
        handle.add_chunk_hook(self._poke)
        handle.add_done_callback(self._poke_done)

    def __aiter__(self) -> _MapIterator[R]:
        return self

    def _poke(self) -> None:
        """A chunk finished (runs on the thread that finished it): wake the iterator once."""
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

    async def __anext__(self) -> tuple[int, R]:
        buffer = self._buffer
        handle = self._handle
        while True:
            if buffer:
                return buffer.popleft()
            # Reading the ranges and creating the future happen with no suspension in
            # between, and _deliver runs on this same thread: no wake-up is lost.
            fresh, ended = handle.finished_ranges(self._cursor)
            self._cursor += len(fresh)
            if fresh:
                for start, end in fresh:
                    values = handle.result_slice(start, end)
                    buffer.extend(zip(range(start, end), values, strict=True))
                continue
            if ended:
                handle.remove_chunk_hook(self._poke)
                state = handle.state
                if state is _SUCCEEDED:
                    raise StopAsyncIteration
                if state is _CANCELLED:
                    raise cancelled_error(handle.name, handle.cancel_reason)
                exc = handle.exception(0)
                assert exc is not None
                raise exc
            future: asyncio.Future[None] = self._loop.create_future()
            self._future = future
            try:
                await future
            except asyncio.CancelledError:
                handle.remove_chunk_hook(self._poke)
                handle.cancel(reason="cancelled: the iterating coroutine was cancelled")
                raise
            finally:
                self._future = None


def iterate_map(handle: ChunkedResults[R]) -> _MapIterator[R]:
    """The body of ``MapHandle.__aiter__``: an async iterator of ``(index, value)``."""
    return _MapIterator(handle, running_loop("async iteration over a map"))
