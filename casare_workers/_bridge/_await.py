"""``await`` on a task handle or a long job: wake the awaiting coroutine, once, cheaply.

On the GUI thread's Qt loop the waiter is resolved from the delivery engine's drain,
after the task's own signals and continuations (see the package docstring's drawing);
on a loop in another thread (a long job's own loop), through
``loop.call_soon_threadsafe``.  Cancellation flows both ways: cancelling the awaiting
coroutine cancels the work, and work cancelled elsewhere raises
``asyncio.CancelledError`` in the awaiter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

from .._engine import DeliveryEngine, get_engine
from .._errors import TaskCancelledError
from ._loops import note_loop, running_loop

__all__ = ("AwaitedTask", "await_job", "await_task", "cancelled_error", "wake")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class AwaitedTask(Protocol[T_co]):
    """What ``await`` needs of a task handle (``TaskHandle`` provides it).

    A protocol rather than the class: the handle imports this module when it is
    awaited, so this module must not import the handle.
    """

    @property
    def name(self) -> str:
        """The task's display name."""

    @property
    def cancel_reason(self) -> str | None:
        """Why it was cancelled, if it was."""

    def done(self) -> bool:
        """True once the outcome is decided."""

    def delivered(self) -> bool:
        """True once the outcome was delivered on the GUI thread."""

    def cancelled(self) -> bool:
        """True if it ended cancelled."""

    def when_delivered(self, hook: Callable[[], object]) -> None:
        """Call ``hook()`` on the GUI thread once the outcome was delivered."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(task)`` on the thread that settles it."""

    def cancel(self, *, reason: str = "cancelled") -> bool:
        """Cancel the task."""

    def result(self, timeout: float | None = None) -> T_co:
        """The result, or raise the task's exception (TaskCancelledError if cancelled)."""


class _GuiWaiter:
    """Wakes one coroutine awaiting a long job on the GUI thread's Qt loop, from a drain."""

    __slots__ = ("engine", "future")

    def __init__(self, future: asyncio.Future[None], engine: DeliveryEngine) -> None:
        self.future = future
        self.engine = engine

    def __call__(self, _settled: object) -> None:
        """The done callback; runs on the thread that settled the job."""
        self.engine.post_item(self)

    def _deliver(self) -> None:
        """Runs on the GUI thread, in the delivery engine's drain."""
        wake(self.future)


def wake(future: asyncio.Future[None]) -> None:
    """Resolve a waiter's future (on its loop's thread), unless it is done or its loop closed."""
    # A loop closed meanwhile (application exit) has nobody left to wake; resolving
    # the future would make it schedule a callback on a closed loop.
    if not future.done() and not future.get_loop().is_closed():
        future.set_result(None)


class _ThreadWaiter:
    """Wakes one awaiting coroutine on a loop in any thread (``call_soon_threadsafe``)."""

    __slots__ = ("future", "loop")

    def __init__(self, future: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        self.future = future
        self.loop = loop

    def __call__(self, _settled: object) -> None:
        """The done callback; runs on the thread that settled the task."""
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            pass

    def _resolve(self) -> None:
        wake(self.future)


def _make_waiter(
    future: asyncio.Future[None],
    loop: asyncio.AbstractEventLoop,
    qt: bool,
    engine: DeliveryEngine,
) -> _GuiWaiter | _ThreadWaiter:
    if qt:
        return _GuiWaiter(future, engine)
    return _ThreadWaiter(future, loop)


def cancelled_error(name: str, reason: str | None) -> asyncio.CancelledError:
    """What the awaiter of work cancelled elsewhere raises: the reason in the message."""
    return asyncio.CancelledError(f"task {name!r} was {reason or 'cancelled'}")


def await_task(handle: AwaitedTask[T]) -> Generator[Any, None, T]:
    """The body of ``TaskHandle.__await__`` (runs in the awaiting coroutine).

    Returns the result, or raises the function's exception unchanged, or
    ``asyncio.CancelledError`` if the task was cancelled.  Cancelling the awaiting
    coroutine cancels the task (queued: removed; running: its ``ctx.cancelled`` turns
    True).
    """
    loop = running_loop("await on a task handle")
    qt = note_loop(loop, get_engine())
    # On the GUI loop, a task that ended is awaited until its outcome was *delivered*
    # (its finished signal and continuations have run, even if a slot of it is still
    # inside a nested event loop), so the handle's signals always precede the awaiter's
    # next line.
    if not (handle.delivered() if qt else handle.done()):
        future: asyncio.Future[None] = loop.create_future()
        if qt:
            handle.when_delivered(functools.partial(wake, future))
        else:
            handle.add_done_callback(_ThreadWaiter(future, loop))
        try:
            yield from future
        except asyncio.CancelledError:
            handle.cancel(reason="cancelled: the awaiting coroutine was cancelled")
            raise
    try:
        return handle.result(0)
    except TaskCancelledError:
        if not handle.cancelled():
            raise  # the function's own TaskCancelledError (a failure), unchanged
        raise cancelled_error(handle.name, handle.cancel_reason) from None


def await_job(job: Any) -> Generator[Any, None, Any]:
    """Await anything that has ``add_done_callback(fn)`` and a ``future`` view.

    For long jobs (and any object settled on another thread whose ``future`` is a
    ``concurrent.futures.Future``); a bare ``concurrent.futures.Future`` works too.
    A long job wires it up with::

        def __await__(self):
            from .._bridge._await import await_job
            return await_job(self)

    Cancelling the awaiting coroutine calls ``job.cancel()`` (or cancels the future).
    """
    view: concurrent.futures.Future[Any] = (
        job if isinstance(job, concurrent.futures.Future) else job.future
    )
    if not view.done():
        loop = running_loop("await on a job")
        engine = get_engine()
        future: asyncio.Future[None] = loop.create_future()
        job.add_done_callback(_make_waiter(future, loop, note_loop(loop, engine), engine))
        try:
            yield from future
        except asyncio.CancelledError:
            cancel = getattr(job, "cancel", None)
            (cancel if callable(cancel) else view.cancel)()
            raise
    if view.cancelled():
        name = getattr(job, "name", type(job).__name__)
        raise cancelled_error(str(name), getattr(job, "cancel_reason", None))
    return view.result(0)
