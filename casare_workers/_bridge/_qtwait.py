"""Qt things to await: a signal's next emission, a modal dialog's outcome.

Both wait without a nested event loop (``QEventLoop.exec()``/``QDialog.exec()`` would
run every other coroutine inside the caller) and clean up their connections whatever
happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QMetaObject, QObject, Qt, SignalInstance

from ._loops import on_loop_thread, running_loop

if TYPE_CHECKING:
    from PySide6.QtWidgets import QDialog

__all__ = ("open_dialog", "wait_signal")


async def wait_signal(signal: SignalInstance, timeout: float | None = None) -> tuple[Any, ...]:
    """Wait for the next emission of a Qt signal; return its arguments as a tuple.

    The signal may be emitted on any thread.  The connection is removed afterwards,
    whatever happens.  A signal of a deleted object never comes: pass a timeout.

    Args:
        signal: A bound signal, e.g. ``reply.finished``.
        timeout: Seconds to wait (None: no limit).

    Raises:
        TimeoutError: The signal was not emitted within ``timeout``.

    Example:
        >>> (code,) = await wait_signal(process.finished, timeout=60)  # doctest: +SKIP
    """
    loop = running_loop("wait_signal()")
    future: asyncio.Future[tuple[Any, ...]] = loop.create_future()
    loop_thread = threading.get_ident()

    def resolve(args: tuple[Any, ...]) -> None:
        if not future.done():
            future.set_result(args)

    def emitted(*args: Any) -> None:
        # Runs in whichever thread Qt calls it from: hop to the loop's thread.
        if threading.get_ident() == loop_thread:
            resolve(args)
        else:
            try:
                loop.call_soon_threadsafe(resolve, args)
            except RuntimeError:  # the loop was closed
                pass

    connection = signal.connect(emitted)
    try:
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(f"the signal was not emitted within {timeout} s") from None
    finally:
        QObject.disconnect(connection)


async def open_dialog(dialog: QDialog, timeout: float | None = None) -> int:
    """Open a modal dialog and wait for its outcome, without a nested ``exec()``.

    ``dialog.exec()`` runs a second event loop inside the caller: under qasync every
    coroutine then runs nested inside it and re-enters code that is still on the stack.
    This opens the dialog (``open()``: window-modal, returns at once) and awaits its
    ``finished`` signal; everything else keeps running normally meanwhile.

    Cancelling the awaiting coroutine (or the timeout) rejects the dialog.  A dialog
    destroyed while open counts as rejected.

    Returns:
        The dialog's result code (``QDialog.DialogCode.Accepted`` is 1).

    Raises:
        TimeoutError: ``timeout`` passed (the dialog was rejected).

    Example:
        >>> if await open_dialog(ConfirmDialog(self)) == QDialog.DialogCode.Accepted:
        ...     await self.save()                                      # doctest: +SKIP
    """
    loop = running_loop("open_dialog()")
    future: asyncio.Future[int] = loop.create_future()

    def finished(code: int) -> None:
        if not future.done():
            future.set_result(int(code))

    def rejected() -> None:
        if not future.done():
            future.set_result(0)  # QDialog.DialogCode.Rejected

    def destroyed(*_: object) -> None:
        # Direct (see _owners): may run inside the destructor on another thread.
        if on_loop_thread(loop):
            rejected()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(rejected)

    connections: list[QMetaObject.Connection] = [
        dialog.finished.connect(finished),
        dialog.destroyed.connect(destroyed, Qt.ConnectionType.DirectConnection),
    ]
    dialog.open()
    try:
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            _reject(dialog)
            raise TimeoutError(f"the dialog was not answered within {timeout} s") from None
    except asyncio.CancelledError:
        _reject(dialog)
        raise
    finally:
        for connection in connections:
            QObject.disconnect(connection)


def _reject(dialog: QDialog) -> None:
    if shiboken6.isValid(dialog) and dialog.isVisible():
        dialog.reject()
