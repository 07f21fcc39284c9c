"""Parking: nobody may delete a running job's C++ object.

PySide deletes every Python-owned QObject when the application object is destroyed
(``app.shutdown()``, interpreter exit); a running ``QThread`` deleted that way aborts the
process ("QThread: Destroyed while thread is still running").  While a job's thread
runs, its C++ object is *parked*: parented to the GUI thread's own ``QThread`` object,
which Qt keeps until the process ends, so it is owned by C++ and nobody deletes it.  It
is unparked on the GUI thread once its thread has finished.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QObject, QThread

__all__ = ("park", "unpark")

# The GUI thread's QThread object.  A strong reference is kept: when a parent's Python
# wrapper dies, Shiboken invalidates its children's wrappers.
_anchor: list[QThread] = []


def park(job: QThread, gui_thread: QThread) -> None:
    """Give the running job's C++ object to Qt.  GUI thread."""
    if not _anchor:
        _anchor.append(gui_thread)
    # QObject's own setParent: LongJob.setParent refuses every parent.
    QObject.setParent(job, _anchor[0])


def unpark(job: QThread) -> None:
    """Give the ended job's C++ object back to Python (and to the registry).  GUI thread."""
    if shiboken6.isValid(job) and job.parent() is not None:
        QObject.setParent(job, None)
