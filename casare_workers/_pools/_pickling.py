"""Work and outcomes that cross a process boundary (process and Dask pools).

* :func:`dumps_checked` pickles a task's function and arguments on the submitting thread,
  so that work that cannot travel is refused by ``submit`` with an error naming the
  culprit, never as a hang or a crash later; :func:`dump_items` does the same for one
  chunk of a ``map``'s items, naming the item;
* :class:`RemoteTraceback` carries the traceback text of an exception raised elsewhere
  (attached as ``__cause__``, as ``concurrent.futures`` does, so the exception itself
  is the user's own, unchanged).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from .._errors import SerializationError, describe_exception

__all__ = (
    "RemoteTraceback",
    "attach_remote_traceback",
    "describe",
    "dump_items",
    "dumps_checked",
    "pickle_dumps",
)


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process or on a cluster."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def attach_remote_traceback(exc: BaseException, text: str | None) -> BaseException:
    """Attach ``text`` (a remote traceback) as ``exc.__cause__``; return ``exc``."""
    if text:
        exc.__cause__ = RemoteTraceback(text)
    return exc


def describe(obj: object) -> str:
    """A short ``repr (a Type)`` of ``obj`` for error messages."""
    kind = type(obj).__qualname__
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the real problem
        return f"a {kind}"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (a {kind})"


def _offender(
    dumps: Callable[[object], bytes], fn: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, BaseException] | None:
    """Find the first part of a call that cannot be pickled (slow path, errors only)."""
    parts: list[tuple[str, object]] = [("the function", fn)]
    parts += [(f"argument {i} ({describe(arg)})", arg) for i, arg in enumerate(args)]
    parts += [
        (f"keyword argument {key!r} ({describe(value)})", value) for key, value in kwargs.items()
    ]
    for label, part in parts:
        try:
            dumps(part)
        except Exception as exc:
            if part is fn:
                label = f"the function {describe(fn)}"
            return label, exc
    return None


def dumps_checked(
    name: str,
    fn: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    dumps: Callable[[object], bytes] | None = None,
    where: str = "a worker process",
) -> bytes:
    """Pickle ``(fn, args, kwargs)`` for ``where``; raise naming the part that cannot be.

    Raises:
        SerializationError: Something cannot be pickled.  The message names the
            function, the positional argument (by index) or the keyword argument, and
            says what to do instead.
    """
    dump = dumps or pickle_dumps
    try:
        return dump((fn, args, kwargs))
    except Exception as exc:
        found = _offender(dump, fn, args, kwargs)
        label, cause = found if found is not None else ("the call", exc)
        hint = (
            "define the function at module level (lambdas, nested functions and bound "
            "methods of unpicklable objects cannot be sent)"
            if label.startswith("the function")
            else "pass data that pickles (paths, bytes, numbers, plain containers) and "
            "open files, locks, sockets or Qt objects inside the task instead"
        )
        raise SerializationError(
            f"cannot run {name} in {where}: {label} cannot be pickled "
            f"({describe_exception(cause)}); {hint}"
        ) from cause


def pickle_dumps(obj: object) -> bytes:
    """``pickle.dumps`` with the highest protocol (what a process pool sends)."""
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def dump_items(
    name: str,
    items: list[Any],
    start: int,
    size: int,
    dumps: Callable[[object], bytes] | None = None,
    where: str = "a worker process",
) -> bytes:
    """Pickle one chunk of a ``map``'s items; raise naming the item that cannot be."""
    dump = dumps or pickle_dumps
    part = items[start : start + size]
    try:
        return dump(part)
    except Exception:
        for offset, item in enumerate(part):
            try:
                dump(item)
            except Exception as exc:
                raise SerializationError(
                    f"cannot run map({name}) in {where}: item {start + offset} "
                    f"({describe(item)}) cannot be pickled ({describe_exception(exc)}); "
                    "pass data that pickles (paths, bytes, numbers, plain containers) instead"
                ) from exc
        raise
