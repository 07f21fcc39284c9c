"""Detect a Qt binding that corrupts the reference counts of ``True`` and ``None``.

PySide6 6.12.0 on CPython 3.11 drops one reference to ``True`` on every
``SignalInstance.emit()`` and one reference to ``None`` on every call from C++ into
Python made by a pool thread.  On 3.11 those objects are not immortal, so after a few
hundred emits the interpreter aborts (``Fatal Python error: bool_dealloc``).  The
dependency pins exclude that combination; this module is the second line of defence,
for any future release with the same defect: it measures the behaviour, not the version.

The probes are tiny (a handful of emits, a handful of pool calls) and, when they do
detect the leak, they give back the references they cost so that the process can still
report the error and exit normally.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from ._errors import BrokenBindingError

__all__ = ("check_bool_leak", "check_none_leak")

_TRIALS = (5, 7, 11)

_none_checked = False
_none_lock = threading.Lock()


def _fix_message(what: str) -> str:
    import PySide6

    version = getattr(PySide6, "__version__", "?")
    py = ".".join(map(str, sys.version_info[:3]))
    where = "signal emit" if what == "True" else "call from Qt into Python"
    dealloc = "bool_dealloc" if what == "True" else "none_dealloc"
    return (
        f"casare_workers refuses to run: PySide6 {version} on Python {py} loses a "
        f"reference to {what} on every {where}, which aborts the interpreter after a few "
        f"hundred calls (Fatal Python error: {dealloc}). Fix: install a PySide6 release "
        "without this defect, for example  pip install 'PySide6-Essentials<6.12'  "
        "(the casare_workers pins already do this on Python < 3.12), or run on Python 3.12 "
        "or newer, where True and None are immortal."
    )


def _measure(obj: object, op: Callable[[int], None]) -> bool:
    """Return True if ``op(n)`` loses exactly ``n`` references to ``obj`` in most trials.

    Exact matches in two of three trials make the probe insensitive to unrelated
    threads that happen to create or drop references at the same time.  Whatever was
    lost is given back with ``Py_IncRef`` so the process stays healthy.
    """
    exact = 0
    lost_total = 0
    for n in _TRIALS:
        before = sys.getrefcount(obj)
        op(n)
        lost = before - sys.getrefcount(obj)
        if lost == n:
            exact += 1
            lost_total += lost
    if lost_total:
        import ctypes  # only to give back what a leaking binding took (rare: on use)

        for _ in range(lost_total):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    return exact >= 2


def check_bool_leak() -> None:
    """Raise ``BrokenBindingError`` if emitting a signal loses a reference to ``True``.

    Runs at import of ``casare_workers``; costs a few microseconds and needs no
    QCoreApplication.
    """
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()

    def emit(n: int) -> None:
        for _ in range(n):
            probe.ping.emit()

    if _measure(True, emit):
        raise BrokenBindingError(_fix_message("True"))


def check_none_leak() -> None:
    """Raise ``BrokenBindingError`` if a Qt pool thread calling Python loses ``None``.

    Runs once per process, the first time casare_workers starts delivering to the GUI
    thread (it needs a short-lived ``QThreadPool``, so it is not done at import).
    """
    global _none_checked
    with _none_lock:
        if _none_checked:
            return
        from PySide6.QtCore import QThreadPool

        pool = QThreadPool()
        pool.setMaxThreadCount(1)

        def run(n: int) -> None:
            for _ in range(n):
                pool.start(_noop)
            pool.waitForDone()

        leaking = _measure(None, run)
        pool.waitForDone()
        _none_checked = True
    if leaking:
        raise BrokenBindingError(_fix_message("None"))


def _noop() -> None:
    return None
