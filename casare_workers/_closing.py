"""Window-close watching: the half of ``owner=`` that is not about destruction.

Everything that takes an ``owner=`` (``manager.options``, ``LongJob``, ``SubprocessJob``,
``LoopThread``, ``Worker.owner``, ``async_slot``, ``TaskGroup``) gives it one meaning:
the work belongs to that object and ends with it, and for a widget "ends" includes its
*window being closed*, because a closed window is gone for its user even when its
object lives on (a dialog that ``reject()`` hid, a window without
``WA_DeleteOnClose``):

* destruction is watched through the owner's ``destroyed`` signal (``_owners``);
* closing is watched here, once per window: an accepted close event (the window is
  hidden once the event was handled; a ``closeEvent`` that ignores it changes nothing),
  or a dialog's ``finished`` (``accept``/``reject``/``done`` and Esc hide a dialog
  without a close event).  Hiding a window (to a tray) is not closing it.

A listener is any object with a ``window_closed(reason)`` method; the watcher holds it
weakly, so whoever needs it keeps it alive (a manager's owner table, a loop thread, a
worker).  Listeners run on the GUI thread.
"""

from __future__ import annotations

import functools
import sys
import weakref
from typing import TYPE_CHECKING, Protocol

import shiboken6
from PySide6.QtCore import QEvent, QObject, QTimer, Slot

from ._engine import get_engine
from ._report import report_callback_exception

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

__all__ = ("CloseListener", "watch_window")

_CLOSE = QEvent.Type.Close


class CloseListener(Protocol):
    """Told when the window of the object it watches is closed.  GUI thread."""

    def window_closed(self, reason: str) -> None:
        """React to the close (cancel the owner's work); ``reason`` says how it closed."""


class _WindowWatcher(QObject):
    """Tells the listeners of one window that it was closed.  GUI thread."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)  # a child: destroyed with the window
        self._window = window
        self.listeners: weakref.WeakSet[CloseListener] = weakref.WeakSet()
        window.installEventFilter(self)
        from PySide6.QtWidgets import QDialog

        if isinstance(window, QDialog):
            window.finished.connect(self._dialog_finished)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Watch for close events (GUI thread); never consumes an event."""
        if event.type() == _CLOSE:
            # The window's closeEvent() may still ignore it: look once it was handled.
            QTimer.singleShot(0, self, self._after_close)
        return False

    @Slot()
    def _after_close(self) -> None:
        if not self._window.isVisible():
            self._notify("its window was closed")

    @Slot(int)
    def _dialog_finished(self, _result: int) -> None:
        self._notify("its dialog finished")

    def _notify(self, reason: str) -> None:
        for listener in list(self.listeners):
            try:
                listener.window_closed(reason)
            except BaseException as exc:  # one faulty listener never stops the others
                report_callback_exception("a window-close listener", exc)


_watchers: dict[int, _WindowWatcher] = {}


def watch_window(owner: QObject, listener: CloseListener) -> None:
    """Call ``listener.window_closed(reason)`` whenever the window of ``owner`` is closed.

    Does nothing for an owner that is no widget (only destruction ends its work).  Any
    thread: off the GUI thread the watch is set up there (an event filter and a child
    QObject of the window must live on the window's thread).  ``listener`` is held
    weakly.
    """
    widgets = sys.modules.get("PySide6.QtWidgets")
    if widgets is None or not isinstance(owner, widgets.QWidget):
        return  # QtWidgets never imported: no object can be a widget
    engine = get_engine()
    if engine.is_gui_thread():
        _watch(owner, listener)
        return
    owner_ref = weakref.ref(owner)
    listener_ref = weakref.ref(listener)

    def later() -> None:
        widget, who = owner_ref(), listener_ref()
        if widget is not None and who is not None and shiboken6.isValid(widget):
            _watch(widget, who)

    engine.post(later)


def _watch(owner: QWidget, listener: CloseListener) -> None:
    window = owner.window()
    key = shiboken6.getCppPointer(window)[0]
    watcher = _watchers.get(key)
    if watcher is None or not shiboken6.isValid(watcher):  # none, or a dead window's
        watcher = _watchers[key] = _WindowWatcher(window)
        # Directly: the entry must go inside the destructor, before the address is reused.
        from PySide6.QtCore import Qt  # on use: see casare_workers._signals

        window.destroyed.connect(
            functools.partial(_forget_watcher, key, watcher), Qt.ConnectionType.DirectConnection
        )
    watcher.listeners.add(listener)


def _forget_watcher(key: int, watcher: _WindowWatcher, *_: object) -> None:
    if _watchers.get(key) is watcher:
        del _watchers[key]
