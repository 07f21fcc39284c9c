"""Cyclic garbage collection on the GUI thread only.

Python's cyclic garbage collector runs on whichever thread happens to allocate when a
generation's threshold is crossed: with worker threads busy, that is usually a worker
thread.  A ``QObject`` that sits in a reference cycle (a widget and a lambda that closes
over it, an exception whose traceback holds the frame of a method of the object, qasync's
own timers) is then deleted on that worker thread, while the GUI thread may be
dispatching an event to it: a segfault, at random, long after the code that made the
cycle ran.  Reference counting is not affected (an object freed by refcount is freed
where its last reference is dropped, which the library arranges to be the GUI thread).

:func:`~casare_workers.collect_garbage_on_gui_thread` turns the automatic collector off
and runs it from a timer on the GUI thread instead, with the interpreter's own thresholds
deciding which generation to collect.  This is the same remedy pyqtgraph and several large
PySide/PyQt applications use; it is opt-in because the collector's state is process-wide.
"""

from __future__ import annotations

import gc

import shiboken6
from PySide6.QtCore import QTimer, qAddPostRoutine

from ._engine import get_engine
from ._errors import ConfigurationError

__all__ = ("GuiGarbageCollector", "collect_garbage_on_gui_thread")

#: Milliseconds between threshold checks by default.
DEFAULT_INTERVAL_MS = 100

_active: GuiGarbageCollector | None = None


class GuiGarbageCollector:
    """Runs Python's cyclic garbage collector from a timer on the GUI thread.

    Create it with :func:`~casare_workers.collect_garbage_on_gui_thread`.  While it is active the
    automatic collector is disabled (``gc.isenabled()`` is False); :meth:`stop` restores
    the state it found.  It lives as long as the ``QCoreApplication``: when that is
    destroyed (an embedding application, a test runner making a new one), the collector
    stops and automatic collection is back at once; call
    :func:`~casare_workers.collect_garbage_on_gui_thread` again for the next application.
    Everything here runs on the GUI thread.
    """

    def __init__(self, interval_ms: int) -> None:
        self._was_enabled = gc.isenabled()
        self._stopped = False
        self._interval_ms = interval_ms
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self.collections = 0
        gc.disable()
        self._timer.start()

    @property
    def active(self) -> bool:
        """True until :meth:`stop`, or until the application is destroyed."""
        return not self._stopped and shiboken6.isValid(self._timer) and self._timer.isActive()

    @property
    def interval_ms(self) -> int:
        """Milliseconds between threshold checks."""
        return self._interval_ms

    def check(self) -> int:
        """Collect the generation the interpreter's thresholds call for, if any.  GUI thread.

        Returns:
            The number of unreachable objects found (0 when no threshold was crossed).
        """
        count0, count1, count2 = gc.get_count()
        threshold0, threshold1, threshold2 = gc.get_threshold()
        if count0 <= threshold0:
            return 0
        generation = 0
        if count1 > threshold1:
            generation = 1
            if count2 > threshold2:
                generation = 2
        self.collections += 1
        return gc.collect(generation)

    def stop(self) -> None:
        """Stop the timer and give collection back to the interpreter.  GUI thread.

        Idempotent; also called when the application is destroyed (its timer is then
        gone already).
        """
        global _active
        if _active is self:
            _active = None
        if self._stopped:
            return
        self._stopped = True
        if shiboken6.isValid(self._timer):
            self._timer.stop()
        if self._was_enabled:
            gc.enable()


def _application_destroyed() -> None:
    # Runs from the QCoreApplication's destructor (Qt's post routines), on the GUI
    # thread: the timer dies with the application, and collection must not stay off.
    active = _active
    if active is not None:
        active.stop()


def collect_garbage_on_gui_thread(interval_ms: int = DEFAULT_INTERVAL_MS) -> GuiGarbageCollector:
    """Run Python's cyclic garbage collector only on the GUI thread, from a timer.

    Call it once, on the GUI thread, after creating the ``QApplication``; a second call
    returns the collector already running.  Recommended for every application that has
    worker threads and QObjects (see the module documentation for the crash it prevents).

    Args:
        interval_ms: How often the GUI thread checks the collector's thresholds.

    Returns:
        The running :class:`~casare_workers.lowlevel.GuiGarbageCollector`.

    Raises:
        ConfigurationError: ``interval_ms`` is not a positive integer.
        RuntimeError: Called from a thread other than the GUI thread.

    Example:
        >>> app = QApplication(sys.argv)                  # doctest: +SKIP
        >>> collect_garbage_on_gui_thread()               # doctest: +SKIP
    """
    global _active
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
        raise ConfigurationError(
            f"interval_ms must be a positive number of milliseconds, got {interval_ms!r}"
        )
    if not get_engine().is_gui_thread():
        raise RuntimeError(
            "collect_garbage_on_gui_thread() must be called on the GUI thread (its timer "
            "lives there); call it right after creating the QApplication"
        )
    if _active is not None and not _active.active:
        _active.stop()  # left from an application destroyed unnoticed: restore its state
    if _active is None:
        _active = GuiGarbageCollector(interval_ms)
        # Qt forgets its post routines once it has run them: one per application.
        qAddPostRoutine(_application_destroyed)
    return _active
