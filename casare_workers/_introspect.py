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

#: What a code object says when its own parameters name neither ``ctx`` nor
#: ``progress_callback`` but it takes ``**kwargs``: a decorator's wrapper
#: (``functools.wraps``) that forwards them to the function it wraps, which decides.
_FORWARDS = -1
#: ``__wrapped__`` links followed at most (a cycle must end).
_MAX_UNWRAP = 100

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
        elif code.co_flags & inspect.CO_VARKEYWORDS:
            mode = _FORWARDS
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


def _through_wrapper(fn: Any, depth: int) -> int:
    """The mode of a function that only forwards ``**kwargs``, as ``inspect.signature`` sees it.

    An explicit ``__signature__`` wins; else the function it wraps (``__wrapped__``,
    set by ``functools.wraps``) decides; a function that wraps nothing is plain.
    """
    if getattr(fn, "__signature__", None) is not None:
        return _mode_of_signature(fn)
    wrapped = getattr(fn, "__wrapped__", None)
    if wrapped is None or depth >= _MAX_UNWRAP:
        return PLAIN
    return _call_mode(wrapped, depth + 1)


def _mode_of(fn: Any, code: CodeType, depth: int) -> int:
    mode = _mode_of_code(code)
    return mode if mode != _FORWARDS else _through_wrapper(fn, depth)


def call_mode(fn: Callable[..., Any]) -> int:
    """Return whether ``fn`` declares ``ctx``, ``progress_callback`` or neither.

    Functions and bound methods (which forward ``__code__``) are answered from a cache
    keyed by their code object; ``functools.partial`` objects and instances with a Python
    ``__call__`` from the code they wrap; anything else from ``inspect.signature``.  A
    decorated function whose wrapper only forwards ``**kwargs`` is looked at through
    ``__wrapped__``, as ``inspect.signature`` does (a wrapper that names ``ctx`` itself
    gets it: that is what calling it needs).  Plain functions pay nothing for this:
    the cached answer for their code says whether there is a wrapper to look through.
    """
    code = getattr(fn, "__code__", None)
    if code is not None:
        mode = _modes.get(code)
        if mode is None:
            mode = _mode_of_code(code)
        return mode if mode != _FORWARDS else _through_wrapper(fn, 0)
    return _call_mode(fn, 0)


def _call_mode(fn: Any, depth: int) -> int:
    code = getattr(fn, "__code__", None)
    if code is not None:
        return _mode_of(fn, code, depth)
    target: Any = fn
    while isinstance(target, functools.partial):
        if "ctx" in target.keywords or "progress_callback" in target.keywords:
            return PLAIN
        target = target.func
        code = getattr(target, "__code__", None)
        if code is not None:
            return _mode_of(target, code, depth)
    if not isinstance(target, type):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - we want the method
        code = getattr(call, "__code__", None)
        if code is not None:
            return _mode_of(call, code, depth)
    return _mode_of_signature(fn)


def positional_slot(fn: Callable[..., Any], name: str) -> int | None:
    """Return how many positional arguments a caller can pass before one lands on ``name``.

    ``None`` when ``name`` is not a positional parameter of ``fn`` or ``fn`` has no code
    object to read (a partial, a builtin): the call itself then reports a clash.  Only
    asked on the rare path of a ``ctx`` function submitted with positional arguments,
    so that ``submit(load, path, ctx)`` fails at once with a clear message instead of
    "got multiple values for argument 'ctx'" from the worker thread.  A decorated
    function is looked at through ``__wrapped__``, as :func:`call_mode` does.
    """
    offset = 1 if getattr(fn, "__self__", None) is not None else 0  # a bound method
    target: Any = fn
    for _ in range(_MAX_UNWRAP):
        code = getattr(target, "__code__", None)
        if code is None:
            return None
        names = code.co_varnames[: code.co_argcount]
        if name in names:
            index: int = names.index(name)
            return index - offset
        forwards = code.co_flags & inspect.CO_VARARGS and code.co_flags & inspect.CO_VARKEYWORDS
        target = getattr(target, "__wrapped__", None) if forwards else None
        if target is None or getattr(target, "__signature__", None) is not None:
            return None
    return None
