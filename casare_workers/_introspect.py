"""How a task function wants to be called: with ``ctx``, ``progress_callback`` or plain."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import CodeType
from typing import Any

__all__ = ("PLAIN", "WANTS_CTX", "WANTS_PROGRESS_CALLBACK", "call_mode", "positional_slot")

PLAIN = 0
WANTS_CTX = 1
WANTS_PROGRESS_CALLBACK = 2

# Code object -> mode.  A plain dict lookup is the whole cost on the hot path (submit
# calls this for every task); bounded so generated code cannot grow it without limit.
_modes: dict[CodeType, int] = {}
_MAX_CACHED = 4096


def _mode_of_code(code: CodeType) -> int:
    mode = _modes.get(code)
    if mode is None:
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if "ctx" in names:
            mode = WANTS_CTX
        elif "progress_callback" in names:
            mode = WANTS_PROGRESS_CALLBACK
        else:
            mode = PLAIN
        if len(_modes) >= _MAX_CACHED:
            _modes.clear()
        _modes[code] = mode
    return mode


def _mode_of_signature(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return PLAIN
    if "ctx" in params:
        return WANTS_CTX
    if "progress_callback" in params:
        return WANTS_PROGRESS_CALLBACK
    return PLAIN


def call_mode(fn: Callable[..., Any]) -> int:
    """Return whether ``fn`` declares ``ctx``, ``progress_callback`` or neither.

    Functions and bound methods (which forward ``__code__``) are answered from a cache
    keyed by their code object; ``functools.partial`` objects and instances with a Python
    ``__call__`` from the code they wrap; anything else from ``inspect.signature``.
    """
    code = getattr(fn, "__code__", None)
    if code is not None:
        return _mode_of_code(code)
    target: Any = fn
    while isinstance(target, functools.partial):
        if "ctx" in target.keywords or "progress_callback" in target.keywords:
            return PLAIN
        target = target.func
        code = getattr(target, "__code__", None)
        if code is not None:
            return _mode_of_code(code)
    if not isinstance(target, type):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - we want the method
        code = getattr(call, "__code__", None)
        if code is not None:
            return _mode_of_code(code)
    return _mode_of_signature(fn)


def positional_slot(fn: Callable[..., Any], name: str) -> int | None:
    """Return how many positional arguments a caller can pass before one lands on ``name``.

    ``None`` when ``name`` is not a positional parameter of ``fn`` or ``fn`` has no code
    object to read (a partial, a builtin): the call itself then reports a clash.  Only
    asked on the rare path of a ``ctx`` function submitted with positional arguments,
    so that ``submit(load, path, ctx)`` fails at once with a clear message instead of
    "got multiple values for argument 'ctx'" from the worker thread.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    names = code.co_varnames[: code.co_argcount]
    if name not in names:
        return None
    index: int = names.index(name)
    if getattr(fn, "__self__", None) is not None:  # a bound method: self is already given
        index -= 1
    return index
