"""``asyncify``: a blocking function as a coroutine function that runs on a manager pool.

Each call submits one task and awaits it (``await handle``: the result, or the
function's exception unchanged); cancelling the awaiting coroutine cancels the task.
"""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from .._core._call import name_of
from ._host import host_of

if TYPE_CHECKING:
    from .._manager import TaskOptions, WorkerManager

__all__ = ("asyncify",)

T = TypeVar("T")
P = ParamSpec("P")


@overload
def asyncify(fn: Callable[P, T], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def asyncify(
    *, pool: str = "io", manager: WorkerManager | None = None
) -> Callable[[Callable[P, T]], Callable[P, Coroutine[Any, Any, T]]]: ...


def asyncify(
    fn: Callable[P, T] | None = None,
    /,
    *,
    pool: str = "io",
    manager: WorkerManager | None = None,
) -> (
    Callable[P, Coroutine[Any, Any, T]]
    | Callable[[Callable[P, T]], Callable[P, Coroutine[Any, Any, T]]]
):
    """Turn a blocking function into a coroutine function that runs it on a manager pool.

    The familiar ``async_wrap`` helper (``run_in_executor`` on the loop's default
    executor), on a bounded, named pool instead.  Each call submits one task and
    awaits it: the result, or the function's exception unchanged; cancelling the
    awaiting coroutine cancels the task.  A function that declares ``ctx`` receives a
    :class:`TaskContext` (declare it ``*, ctx: TaskContext | None = None`` so type
    checkers accept calls without it); the caller's contextvars travel with the call.

    Args:
        fn: The blocking function (when used as a bare ``@asyncify``).
        pool: The pool to run on (default ``"io"``).
        manager: The manager (default: :func:`default_manager`, looked up per call).

    Raises:
        TypeError: ``fn`` is already a coroutine function, or not callable.
        UnknownPoolError: ``manager`` was given and has no such pool.

    Example:
        >>> @asyncify(pool="cpu")                        # doctest: +SKIP
        ... def ocr(image):
        ...     return engine.read(image)
        >>> text = await ocr(screenshot)                 # doctest: +SKIP
    """
    if manager is not None:
        manager.options(pool=pool)  # fail now, at decoration time, on a bad pool name

    def decorate(fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"asyncify() wraps blocking functions; {name_of(fn)} is already a "
                "coroutine function: await it directly"
            )
        if not callable(fn):
            raise TypeError(f"asyncify() expects a function, got {type(fn).__name__}")
        # The options and the function to send, for the manager they were made for
        # (held weakly: the default manager may be replaced between calls).
        cache: list[tuple[weakref.ref[WorkerManager], TaskOptions, Callable[..., T]]] = []

        def target() -> tuple[TaskOptions, Callable[..., T]]:
            mgr = manager
            if mgr is None:
                from .._manager import default_manager

                mgr = default_manager()
            if not cache or cache[0][0]() is not mgr:
                host, opts = host_of(mgr, pool, name_of(fn))
                # Process pools pickle functions by name; Dask's cloudpickle copes alone.
                by_name = host.pool(pool).kind == "process"
                cache[:] = [(weakref.ref(mgr), opts, _picklable(fn, run) if by_name else fn)]
            return cache[0][1], cache[0][2]

        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            opts, call = target()
            return await opts.submit(call, *args, **kwargs)

        return run

    if fn is not None:
        return decorate(fn)
    return decorate


def _picklable(fn: Callable[..., T], wrapper: Callable[..., Any]) -> Callable[..., T]:
    """What a process pool is sent for ``fn``, the function ``wrapper`` wraps.

    ``@asyncify`` on a module-level function replaces the module's attribute with the
    wrapper, so pickle, which sends functions by name, finds the wrapper there instead
    of ``fn`` and refuses.  The wrapper itself *is* found by that name, and it holds
    ``fn`` as ``__wrapped__``: send a reference to the wrapper and unwrap it in the
    worker.  A function still reachable under its own name is sent as it is.
    """
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    found: Any = module
    for part in getattr(fn, "__qualname__", "").split("."):
        found = getattr(found, part, None)
    if found is fn or found is not wrapper:
        return fn  # by name as usual (or not at all: the pool says why, at submit)
    return cast("Callable[..., T]", _Unwrap(wrapper))


class _Unwrap:
    """Calls ``wrapper.__wrapped__``; pickles as a reference to the (importable) wrapper.

    It exposes the wrapped function's code object, so the pool sees the same
    parameters (``ctx`` included) as for the function itself.
    """

    __slots__ = ("_wrapper",)

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        self._wrapper = wrapper

    @property
    def __code__(self) -> Any:
        return self._wrapper.__wrapped__.__code__  # type: ignore[attr-defined]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[type[_Unwrap], tuple[Callable[..., Any]]]:
        return (_Unwrap, (self._wrapper,))
