"""Progress for one-argument slots: ``to_percent`` turns ``(done, total)`` into a percentage.

Every progress signal of the library (``TaskHandle.signals.progress``, ``MapHandle``,
``Worker``, ``LongJob.progress``) carries ``(current, total)``, which keeps large totals
exact (byte counts) and tells "unknown" apart (``total <= 0``).  A ``QProgressBar``'s
``setValue`` and most hand-written slots take one number: connecting them directly
fails on every update (a ``TypeError`` per update, the bar never moves).
"""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject

__all__ = ("to_percent",)


def to_percent(slot: Callable[[int], object], /) -> Callable[[int, int], None]:
    """Adapt a one-argument slot to the ``(current, total)`` progress signals.

    The returned callable calls ``slot(percent)``, a whole number from 0 to 100
    (``current * 100 // total``), which is what a ``QProgressBar`` with its default
    range wants.  Updates with an unknown total (``total <= 0``) are skipped.  If
    ``slot`` is a method of a QObject that has since been destroyed, nothing is called.
    It runs where the signal is delivered: the GUI thread.

    Args:
        slot: A callable taking one int, e.g. ``bar.setValue``.

    Returns:
        A callable taking ``(current, total)``, to connect to a progress signal.

    Raises:
        TypeError: ``slot`` is not callable.

    Example:
        >>> handle = manager.submit(import_files, paths)                   # doctest: +SKIP
        >>> handle.signals.progress.connect(to_percent(self.bar.setValue))  # doctest: +SKIP
        >>> job.progress.connect(to_percent(self.bar.setValue))           # doctest: +SKIP
    """
    if not callable(slot):
        raise TypeError(
            f"to_percent() takes a callable such as bar.setValue, got {type(slot).__name__}"
        )
    receiver = getattr(slot, "__self__", None)
    guard = receiver if isinstance(receiver, QObject) else None

    def show_percent(current: int, total: int) -> None:
        if total <= 0:
            return  # unknown total: nothing to show as a percentage
        if guard is not None and not shiboken6.isValid(guard):
            return  # the widget is gone (see the docstring)
        slot(max(0, min(100, current * 100 // total)))

    return show_percent
