"""How a task function wants to be called: with ``ctx``, ``progress_callback`` or plain."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ("PLAIN", "WANTS_CTX", "WANTS_PROGRESS_CALLBACK", "call_mode")

PLAIN = 0
WANTS_CTX = 1
WANTS_PROGRESS_CALLBACK = 2


@functools.lru_cache(maxsize=2048)
def _mode_of_code(code: Any) -> int:
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if "ctx" in names:
        return WANTS_CTX
    if "progress_callback" in names:
        return WANTS_PROGRESS_CALLBACK
    return PLAIN


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

    Functions, methods, ``functools.partial`` objects and instances with a Python
    ``__call__`` are answered from their code object (cached, no ``inspect`` on the hot
    path); anything else falls back to ``inspect.signature``.
    """
    target: Any = fn
    while isinstance(target, functools.partial):
        if "ctx" in target.keywords or "progress_callback" in target.keywords:
            return PLAIN
        target = target.func
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    if code is None and not isinstance(target, type):
        call = type(target).__dict__.get("__call__") or getattr(type(target), "__call__", None)  # noqa: B004
        code = getattr(call, "__code__", None)
        if code is not None:
            return _mode_of_code(code)
    if code is not None:
        return _mode_of_code(code)
    return _mode_of_signature(fn)
