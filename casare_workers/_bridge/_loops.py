"""Which event loop is which, and cancelling an asyncio task from any thread.

The bridge takes a fast path on the GUI thread's Qt-driven loop (qasync, or PySide6's
QtAsyncio): there the delivery engine's drain runs *inside* the loop, so a waiter can
be resolved straight from it.  Such loops are recognised by the module of a class in
their MRO, so qasync is never imported.  The GUI thread's loop is remembered (weakly)
when it is first seen, for the calls that reach it from other threads
(:func:`~casare_workers._bridge._crossloop.run_in_loop` and friends).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .._engine import DeliveryEngine, get_engine
from .._errors import NoEventLoopError

__all__ = (
    "cancel_task",
    "is_qt_loop",
    "known_gui_loop",
    "note_loop",
    "on_loop_thread",
    "register_gui_loop",
    "running_loop",
)

# Event loops that run on the Qt event loop, recognised by the module of a class in
# their MRO (so qasync is never imported here).  Only on such a loop does the delivery
# engine's drain run *inside* the loop, which is what the fast path relies on.
_QT_LOOP_MODULES = ("qasync", "PySide6.QtAsyncio")
_qt_loop_types: dict[type, bool] = {}


def is_qt_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop`` runs on a Qt event loop (qasync, QtAsyncio); cached per class."""
    kind = type(loop)
    known = _qt_loop_types.get(kind)
    if known is None:
        known = any(cls.__module__.startswith(_QT_LOOP_MODULES) for cls in kind.__mro__)
        _qt_loop_types[kind] = known
    return known


_gui_loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None


def register_gui_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember ``loop`` (weakly) as the GUI thread's loop."""
    global _gui_loop_ref
    ref = _gui_loop_ref
    if ref is None or ref() is not loop:
        _gui_loop_ref = weakref.ref(loop)


def known_gui_loop() -> asyncio.AbstractEventLoop | None:
    """The GUI thread's loop last seen, unless it was closed or freed since."""
    ref = _gui_loop_ref
    loop = ref() if ref is not None else None
    if loop is None or loop.is_closed():
        return None
    return loop


def running_loop(what: str) -> asyncio.AbstractEventLoop:
    """The loop running in this thread; else NoEventLoopError saying ``what`` needs one."""
    loop = asyncio._get_running_loop()
    if loop is None:
        raise NoEventLoopError(
            f"{what} needs a running asyncio event loop in this thread; run it from a "
            "coroutine on the qasync loop (e.g. asyncio.run(main(), loop_factory="
            "qasync.QEventLoop)) or on a loop of your own"
        )
    return loop


def note_loop(loop: asyncio.AbstractEventLoop, engine: DeliveryEngine) -> bool:
    """True if ``loop`` is the Qt loop of the GUI thread (and remember it as such)."""
    if is_qt_loop(loop) and engine.is_gui_thread():
        register_gui_loop(loop)
        return True
    return False


def on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """True if the calling thread is the one ``loop`` runs on."""
    if asyncio._get_running_loop() is loop:
        return True
    return is_qt_loop(loop) and get_engine().is_gui_thread()


def cancel_task(task: asyncio.Future[Any], message: str) -> None:
    """Cancel an asyncio task from any thread (it is cancelled on its loop's thread)."""
    loop = task.get_loop()
    if loop.is_closed() or task.done():
        return
    if on_loop_thread(loop):
        task.cancel(message)
        return
    try:
        loop.call_soon_threadsafe(task.cancel, message)
    except RuntimeError:  # closed meanwhile: nothing left to cancel
        pass
