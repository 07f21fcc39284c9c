"""``TaskOptions``: per-task options bound to a manager (``manager.options(...)``).

An options object only carries what to submit with; the work goes through the
manager's core, which it knows as a :class:`Submitter`::

    manager.options(pool=..., owner=..., key=...)   validated once, reusable
        └► TaskOptions.submit / map / start ─► Submitter (the core) ─► the pool
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, get_args, overload

from PySide6.QtCore import QObject

from .._core._handle import TaskHandle
from .._errors import ConfigurationError
from .._owners import OwnerRecord
from .._pools._map import MapHandle
from .._worker import Worker

__all__ = ("KEY_POLICIES", "KeyPolicy", "Submitter", "TaskOptions")

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

#: What a new task with the key of one in flight does (``options(key_policy=...)``).
KeyPolicy = Literal["supersede", "join"]
KEY_POLICIES: tuple[str, ...] = get_args(KeyPolicy)


class Submitter(Protocol):
    """What :class:`TaskOptions` submits through (the manager's core implements it)."""

    def submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: TaskOptions,
    ) -> TaskHandle[T]:
        """Run ``fn(*args, **kwargs)`` with ``opts``; the handle (a joined one with "join")."""

    def map(
        self,
        fn: Callable[[Any], R],
        iterable: Iterable[Any],
        chunksize: int | None,
        opts: TaskOptions,
    ) -> MapHandle[R]:
        """Map ``fn`` over ``iterable`` with ``opts``: one handle."""

    def start(self, worker: Worker[T], opts: TaskOptions) -> TaskHandle[T]:
        """Start ``worker`` with ``opts``; its handle."""


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options, bound to a manager: ``manager.options(...)`` returns one.

    Options never share a namespace with your function's own keyword arguments, so
    ``manager.options(timeout=5).submit(fetch, url, timeout=30)`` passes ``timeout=30``
    to ``fetch``.  Instances are immutable and reusable.

    Attributes:
        pool: Pool name (default ``"io"``).
        priority: Higher runs first within the pool (default 0).
        key: Tasks with the same key (per owner) are one request.  By default a new one
            supersedes the previous one (cancels it if it has not ended), so an old
            reply can never arrive after a newer one.
        timeout: Seconds a task may run before it ends with ``TaskTimeoutError``.
        name: A display name (default: the function's qualified name).
        key_policy: What a new task with the key of one in flight does:
            ``"supersede"`` (default: cancel the old one, run the new one) or
            ``"join"`` (single flight: ``submit`` returns the handle in flight and
            runs nothing new).

    The owner (a QObject, usually the widget showing the result) is held as a record,
    not a reference: when it is destroyed, or its window is closed, its queued tasks are
    cancelled and running ones are asked to stop; once it is destroyed nothing is
    delivered to it any more.
    """

    core: Submitter = field(repr=False)
    pool: str = "io"
    priority: int = 0
    owner_record: OwnerRecord | None = field(default=None, repr=False)
    key: Hashable | None = None
    timeout: float | None = None
    name: str | None = None
    key_policy: KeyPolicy = "supersede"

    @property
    def owner(self) -> QObject | None:
        """The owner QObject while it is alive, else None."""
        return self.owner_record.get() if self.owner_record is not None else None

    @overload
    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskHandle[T]: ...
    # Reached when the arguments do not fit P: a function that declares ctx.
    @overload
    def submit(  # type: ignore[overload-cannot-match]
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> TaskHandle[T]: ...
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        """Submit ``fn(*args, **kwargs)`` with these options (see ``WorkerManager.submit``).

        With ``key_policy="join"`` and a task with the same key (and owner) still
        queued or running, return that task's handle instead: its outcome answers this
        request too, and nothing new runs (``fn`` and the arguments are not used).
        Every caller gets the same handle: cancelling it cancels it for all of them.
        """
        return self.core.submit(fn, args, kwargs, self)

    def map(
        self, fn: Callable[[Any], R], iterable: Iterable[Any], /, *, chunksize: int | None = None
    ) -> MapHandle[R]:
        """Map ``fn`` over ``iterable`` with these options (see ``WorkerManager.map``)."""
        if self.key_policy != "supersede":
            raise ConfigurationError(_JOIN_SUBMIT_ONLY.format(method="map"))
        return self.core.map(fn, iterable, chunksize, self)

    def start(self, worker: Worker[T]) -> TaskHandle[T]:
        """Start ``worker`` with these options (see ``WorkerManager.start``)."""
        if self.key_policy != "supersede":
            raise ConfigurationError(_JOIN_SUBMIT_ONLY.format(method="start"))
        return self.core.start(worker, self)


_JOIN_SUBMIT_ONLY = (
    "key_policy='join' applies to submit() (a joined caller gets the handle in flight); "
    "{method}() always starts new work: use key_policy='supersede' (the default)"
)
