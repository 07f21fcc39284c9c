"""What a remote pool ships: a job (a whole task, or one chunk of a ``map``).

A ``map`` on a remote pool is cut into chunk jobs that share one :class:`MapState`: the
function, pickled once; how many items are done; whether its task has begun.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._core._handle import TaskHandle

__all__ = ("MapState", "RemoteJob")


class MapState:
    """The shared state of one ``map`` spread over several chunk jobs."""

    __slots__ = ("done", "fn_payload", "started")

    def __init__(self, fn_payload: bytes) -> None:
        self.fn_payload = fn_payload  # the function, pickled once for every chunk
        self.done = 0  # items whose results are stored
        self.started = False  # a chunk began the map's task


class RemoteJob:
    """One call to ship: a whole task, or one chunk (``start``, ``count``) of a ``map``.

    Backends add their own fields in a subclass.
    """

    __slots__ = (
        "begun",
        "count",
        "map",
        "order",
        "payload",
        "priority",
        "signalled",
        "start",
        "task",
    )

    def __init__(
        self,
        task: TaskHandle[Any],
        payload: bytes,
        priority: int,
        map_state: MapState | None = None,
        start: int = 0,
        count: int = 0,
    ) -> None:
        self.task = task
        self.payload = payload
        self.priority = priority
        self.order = -1  # its place in the queue, given when first queued, kept if put back
        self.map = map_state
        self.start = start
        self.count = count
        self.begun = False  # its task was started for it (or by a chunk before it)
        self.signalled = False  # the backend was told that its task ended here

    def describe(self) -> str:
        """``task 'name'`` or ``items 8-11 of map(name)``, for error messages."""
        if self.map is None:
            return f"task {self.task.name!r}"
        last = self.start + self.count - 1
        return f"items {self.start}-{last} of map({self.task.name})"
