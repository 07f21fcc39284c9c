"""``JobWork``: what a long job runs, checked when the job is created.

A job runs either a function (``LongJob(fn, args=(...), kwargs={...})``, the
``threading.Thread`` convention) or its subclass's ``work`` method (positional
arguments of the constructor go to ``work``).  :meth:`JobWork.parse` turns the
constructor's arguments into one of the two, refusing what could never run with a
message that names the fix; :meth:`JobWork.invoke` runs it on the job thread, passing
``ctx`` if the function declares it and running ``async`` work on the job's own loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._introspect import WANTS_CTX, call_mode
from ._context import JobContext
from ._jobcore import JobCore

__all__ = ("JobWork",)


@dataclass(frozen=True, slots=True)
class JobWork:
    """The function a job runs, its arguments, and how to call it.

    Attributes:
        fn: The target function, or the subclass's bound ``work``.
        args: Positional arguments.
        kwargs: Keyword arguments (without ``ctx``: :meth:`invoke` adds it).
        mode: How ``fn`` takes the context (``casare_workers._introspect.call_mode``).
        is_async: ``fn`` is a coroutine function.
        default_name: The job's name when none is given.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    mode: int
    is_async: bool
    default_name: str

    @classmethod
    def parse(
        cls,
        job_type: type,
        work: Callable[..., Any] | None,
        positional: tuple[Any, ...],
        args: Iterable[Any],
        kwargs: Mapping[str, Any] | None,
    ) -> JobWork:
        """What a ``job_type(*positional, args=..., kwargs=...)`` runs.

        Args:
            job_type: The job's class (named in messages).
            work: The job's bound ``work`` if its class overrides it, else None.
            positional: The constructor's positional arguments.
            args: Its ``args=``.
            kwargs: Its ``kwargs=``.

        Raises:
            TypeError: Nothing to run, a target that is not callable (a Qt parent given
                where the target goes), arguments given two ways, or arguments a
                subclass's ``work`` cannot take.
        """
        if work is not None:
            # The subclass form: positional arguments are work()'s (Migrate(steps, ...)).
            if positional and args:
                raise TypeError(
                    f"{job_type.__qualname__}(...) got work() arguments both positionally "
                    "and as args=; pass them one way"
                )
            if positional:
                args = positional
            fn = work
            default_name = job_type.__qualname__
        else:
            if not positional:
                raise TypeError(
                    "LongJob needs work to run: LongJob(fn, args=(...)), or subclass "
                    "LongJob and override work(self, ctx)"
                )
            target = positional[0]
            if not callable(target):
                raise TypeError(
                    f"LongJob(target) expects a callable, got {type(target).__name__}; "
                    "if you meant a Qt parent, pass owner=widget instead (a parent would "
                    "delete the running thread)"
                )
            if len(positional) > 1:
                raise TypeError(
                    "LongJob(fn, ...) takes the function's arguments as args=(...) and "
                    "kwargs={...}, so that they never collide with the job's own options: "
                    f"LongJob({_qualname(target)}, args=(...))"
                )
            fn = target
            default_name = _qualname(target)
        if isinstance(args, str | bytes):
            raise TypeError("args must be a tuple of positional arguments, not a string")
        args = tuple(args)
        kwargs = dict(kwargs or {})
        mode = call_mode(fn)
        if mode == WANTS_CTX and "ctx" in kwargs:
            raise TypeError("the job passes ctx itself: do not put 'ctx' in kwargs")
        if work is not None:
            _check_work_arguments(job_type, fn, args, kwargs)
        return cls(fn, args, kwargs, mode, inspect.iscoroutinefunction(fn), default_name)

    def invoke(self, ctx: JobContext, core: JobCore) -> Any:
        """Run the work; return its value (a coroutine runs on the job's loop).  Job thread."""
        fn, args, kwargs = self.fn, self.args, self.kwargs
        if self.mode == WANTS_CTX:
            kwargs = {**kwargs, "ctx": ctx}
        if self.is_async:
            return core.run_async(lambda: fn(*args, **kwargs))
        value = fn(*args, **kwargs)
        if inspect.iscoroutine(value):  # a plain function that returned a coroutine
            return core.run_async(lambda: value)
        return value


def _qualname(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _check_work_arguments(
    job_type: type, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Refuse, at construction, arguments a subclass's ``work()`` cannot take."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # nothing to check against
        return
    extra = {"ctx": None} if call_mode(fn) == WANTS_CTX else {}
    try:
        signature.bind(*args, **kwargs, **extra)
    except TypeError as exc:
        name = job_type.__qualname__
        raise TypeError(
            f"{name}(...) passes its positional arguments to {name}.work(), which cannot "
            f"take them ({exc}): declare them as parameters of work (def work(self, steps, "
            "ctx)), or take them in your own __init__ and pass only the job's options "
            "(owner=, key=, name=, manager=) to super().__init__()"
        ) from None
