"""How managers live in the process: the default manager's slot, the final shutdown.

A manager shuts down by itself, bounded by its ``shutdown_timeout``, on whichever comes
first of two independent paths, so that no single Qt signal carries the guarantee::

    QApplication.destroyed (direct) ──────────────┐
    threading exit hook (before concurrent.futures ├─► shutdown_all ─► core.shutdown(...)
      and threading join their threads) ──────────┘        for every live core
    QApplication.aboutToQuit ─► note_quit: the exit's steps share one deadline
    WorkerManager.destroyed (direct) ─► abandon: refuse work, cancel it, no waiting

Once the interpreter has begun to exit (:func:`interpreter_exiting`), a manager refuses
new work: nothing could run or be delivered any more.

The cores are known here only as :class:`Stoppable`, the default manager only as a
``QObject``: this module imports neither the core nor the facade.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject

from ._stats import ShutdownReport

__all__ = (
    "DefaultSlot",
    "Stoppable",
    "abandon",
    "event_loop_running",
    "interpreter_exiting",
    "register_final_shutdown",
)

logger = logging.getLogger("casare_workers")

M = TypeVar("M", bound=QObject)


class Stoppable(Protocol):
    """What the final shutdown needs of a manager's core."""

    #: True once the manager refuses work (shut down, abandoned, or made during exit).
    closed: bool
    #: ``time.monotonic()`` of the application's last ``aboutToQuit``.
    quit_at: float | None

    def shutdown(
        self,
        timeout: float | None,
        cancel_pending: bool,
        *,
        deliver: bool = True,
        automatic: bool = False,
    ) -> ShutdownReport:
        """Stop all work within the timeout (``WorkerManager.shutdown``)."""

    def abandon(self) -> None:
        """Refuse work and cancel it all, without waiting (any thread)."""


def abandon(core_ref: weakref.ref[Stoppable], *_: object) -> None:
    """The manager QObject was destroyed (any thread): refuse work, free the threads."""
    core = core_ref()
    if core is not None:
        core.abandon()


#: Every manager not shut down yet, for the shutdown at exit and at application death.
_live_cores: weakref.WeakSet[Stoppable] = weakref.WeakSet()
_hooked_apps: weakref.WeakSet[QCoreApplication] = weakref.WeakSet()
_exit_hooked = False
_final_lock = threading.Lock()


def register_final_shutdown(core: Stoppable, app: QCoreApplication) -> None:
    """Make sure ``core`` is shut down (bounded) when ``app`` dies or Python exits.

    Two independent paths, so no single Qt signal carries the guarantee: the
    application's ``destroyed`` (direct, so it runs even on another thread) and a hook
    that runs at interpreter exit before ``concurrent.futures`` and ``threading`` join
    their threads (``threading._register_atexit``; its hooks run last-registered first,
    and this one is registered after the pools imported ``concurrent.futures``).
    """
    global _exit_hooked
    from PySide6.QtCore import Qt  # on use: see casare_workers._signals

    with _final_lock:
        _live_cores.add(core)
        if app not in _hooked_apps:
            _hooked_apps.add(app)
            app.aboutToQuit.connect(_note_quit)
            app.destroyed.connect(
                functools.partial(_shutdown_all, "application destroyed", False),
                Qt.ConnectionType.DirectConnection,
            )
        if not _exit_hooked:
            _exit_hooked = True
            register = getattr(threading, "_register_atexit", None)
            hook = functools.partial(_shutdown_all, "interpreter exit", True)
            try:
                if register is None:
                    raise RuntimeError("no threading._register_atexit")
                register(hook)
            except RuntimeError:  # interpreter already shutting down, or an old Python
                atexit.register(hook)


def _note_quit() -> None:
    """``aboutToQuit``: the event loop is returning.  Note when (see ``quit_deadline``)."""
    now = time.monotonic()
    with _final_lock:
        cores = list(_live_cores)
    for core in cores:
        core.quit_at = now


def event_loop_running() -> bool:
    """True while a Qt event loop runs on the GUI thread (``exec()`` not returned)."""
    app = QCoreApplication.instance()
    return app is not None and app.thread().loopLevel() > 0


def _shutdown_all(why: str, deliver: bool, *_: object) -> None:
    """Shut every live manager down with its own timeout (exit or application death)."""
    with _final_lock:
        cores = list(_live_cores)
    for core in cores:
        if core.closed:
            continue
        try:
            core.shutdown(None, True, deliver=deliver, automatic=True)
        except BaseException as exc:  # one manager's failure must not spare the others
            logger.error("shutdown at %s failed", why, exc_info=exc)


# -- interpreter exit: no new work -------------------------------------------------------

#: True once the interpreter has begun to exit.  Set by a ``threading`` exit hook, which
#: runs before every ``atexit`` hook: managers are shut down then (``_shutdown_all``),
#: and one made later (in an ``atexit`` hook, by ``default_manager()``) starts closed.
#: As ``concurrent.futures`` does, nothing is started then: a thread may no longer be
#: created (3.12+), or would run the work while the interpreter is torn down.
_interpreter_exiting = False


def interpreter_exiting() -> bool:
    """True once the interpreter has begun to exit: no new work may start."""
    return _interpreter_exiting


def _mark_interpreter_exit() -> None:
    global _interpreter_exiting
    _interpreter_exiting = True


try:
    threading._register_atexit(_mark_interpreter_exit)  # type: ignore[attr-defined]
except RuntimeError:  # imported while the interpreter exits already
    _interpreter_exiting = True


# -- the default manager -----------------------------------------------------------------


class DefaultSlot(Generic[M]):
    """The process-wide default manager (``default_manager()``), one slot, thread-safe.

    Held weakly when the manager adopted itself (the application owns its manager);
    strongly when ``default_manager()`` made it or ``set_default_manager()`` was given it
    (nobody else may hold it).

    Args:
        closed: Whether a manager was shut down (then it is no default any more).
    """

    def __init__(self, closed: Callable[[M], bool]) -> None:
        self._closed = closed
        self._ref: Callable[[], M | None] | None = None
        self._lock = threading.Lock()

    def _open(self) -> M | None:
        """The default manager while it is usable (not destroyed, not shut down).  Lock held."""
        manager = self._ref() if self._ref is not None else None
        if manager is None or not shiboken6.isValid(manager) or self._closed(manager):
            return None
        return manager

    def adopt(self, manager: M) -> None:
        """Make a new manager the default if no open one exists (``default=True``)."""
        with self._lock:
            if self._open() is None:
                self._ref = weakref.ref(manager)

    def get(self, make: Callable[[], M]) -> M:
        """The open default manager; one made with ``make`` (and held) if there is none."""
        with self._lock:
            manager = self._open()
            if manager is None:
                manager = make()
                self._ref = _strong(manager)
            return manager

    def set(self, manager: M | None) -> None:
        """Replace (or clear, with None) the default manager; hold it."""
        with self._lock:
            self._ref = None if manager is None else _strong(manager)


def _strong(manager: M) -> Callable[[], M | None]:
    return lambda: manager
