"""``WorkerSignals``: the QObject a task's events are emitted from, on the GUI thread.

Why the signals are *ports* and not bare ``SignalInstance`` s
-------------------------------------------------------------

PySide keeps every connection from a signal to a Python callable that is not a method of
a QObject (a lambda, a function, a ``functools.partial``, a method of a plain object) in
one process-wide table, and when a sender with such connections is destroyed it scans the
*whole* table (``SenderSignalDeletionTracker::senderDestroyed`` in libpyside's
``dynamicslot.cpp``).  A task's signals object dies after ``finished``, so with 20 000
tasks in flight, each with a few lambdas connected, every task costs a scan of ~100 000
entries: measured 24 µs per task at 2 000 in flight and 350 µs at 20 000 (PySide6 6.12,
``benchmarks/bench_signals.py``), and 60-100 s of frozen GUI for 20 000 tasks with seven
lambdas each.  Connections to methods of QObjects (``@Slot`` or not) and to C++ slots
(``label.setText``) are real Qt connections and cost the same at any scale.

So each signal of :class:`WorkerSignals` is a :class:`SignalPort`: ``connect`` keeps
plain Python callables in a list of its own (O(1) to add, to call and to drop) and hands
everything else to the real Qt signal, which still exists under the same name in the
object's meta-object.  ``qtbot.waitSignal``, ``QSignalSpy(signals, SIGNAL("finished()"))``,
``QObject.connect`` with a signature string and connections to QObject slots work as
before; the port's :attr:`SignalPort.qt` is the real ``SignalInstance`` when an API insists
on one.

Connection rules of a port (the same as PySide's for what it keeps):

* a plain Python callable with ``AutoConnection``/``DirectConnection``: kept by the port;
  called with as many leading arguments as it accepts (PySide's rule for functions and
  methods; a callable whose signature is not a code object gets them all); a method of a
  plain object is held weakly and dropped when its object dies; an exception goes to
  ``sys.excepthook`` with its traceback and the other slots still run;
* a method of a QObject, a C++ slot, a signal, or an explicit queued/blocking connection:
  a real Qt connection (thread affinity, ``sender()`` and auto-disconnection as in Qt).

Within one emission the port's callables run first, in connection order, then the Qt
connections in theirs.  Emitted on a thread other than the object's (the GUI thread) the
port's callables are queued to it, as Qt queues a cross-thread connection.
"""

from __future__ import annotations

import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast, overload

from PySide6.QtCore import QMetaMethod, QObject, QThread, QTimer, Signal, SignalInstance

from ._engine import get_engine

if TYPE_CHECKING:
    from PySide6.QtCore import Qt

__all__ = ("SignalPort", "WorkerSignals", "drop_connections", "fire", "has_listeners")

_CO_VARARGS = 0x04
# Qt.ConnectionType's values (fixed by Qt's ABI), as plain ints, and ``Qt`` imported only
# where it is used: PySide builds the whole Qt namespace, every enum in it, the first time
# ``Qt`` is imported (~36 ms), a cost ``import casare_workers`` leaves to first use (most
# applications pay it anyway with their first ``Qt.`` flag).
_UNIQUE = 0x80  # Qt.UniqueConnection
_DIRECT_KINDS = (0, 1)  # Qt.AutoConnection, Qt.DirectConnection


def _arity(slot: Callable[..., object]) -> int | None:
    """How many leading arguments PySide would pass to ``slot`` (None: all of them)."""
    func: Any = slot
    bound = 0
    if isinstance(slot, types.MethodType):
        func, bound = slot.__func__, 1
    code = getattr(func, "__code__", None)
    if code is None or code.co_flags & _CO_VARARGS:
        return None
    return max(0, int(code.co_argcount) - bound)


_FunctionType = types.FunctionType
_MethodType = types.MethodType


class _Entry:
    """One plain Python callable connected through a port."""

    __slots__ = ("arity", "dead", "key", "ref", "slot")

    def __init__(self, slot: Callable[..., object]) -> None:
        self.dead = False
        self.ref: weakref.WeakMethod[Callable[..., object]] | None = None
        if slot.__class__ is _FunctionType:  # a lambda or a function: the common case
            code = slot.__code__
            self.arity = None if code.co_flags & _CO_VARARGS else code.co_argcount
            self.slot: Callable[..., object] | None = slot
            self.key: object = slot
            return
        self.arity = _arity(slot)
        if isinstance(slot, _MethodType):
            # PySide holds a method's object weakly: connecting must not keep it alive.
            self.slot = None
            self.ref = weakref.WeakMethod(slot)
            self.key = (id(slot.__self__), slot.__func__)
        else:
            self.slot = slot
            self.key = slot

    def matches(self, slot: object) -> bool:
        """True if ``slot`` names this connection (as ``disconnect(slot)`` means it)."""
        if isinstance(slot, _Entry):
            return slot is self
        if isinstance(slot, _MethodType):
            return (
                self.ref is not None
                and self.key == (id(slot.__self__), slot.__func__)
                and self.ref() is not None
            )
        return self.ref is None and (self.slot is slot or self.slot == slot)


# Guards the copy-on-write of every port's list (connect/disconnect are rare and short).
_ports_lock = threading.Lock()


class SignalPort:
    """One signal of a :class:`WorkerSignals`: ``connect``, ``disconnect``, ``emit``.

    Behaves like a ``SignalInstance`` (see the module docstring for the rules), but
    connecting and dropping plain Python callables costs O(1) whatever the number of
    connections alive in the process.  Thread-safe: connect and disconnect from any
    thread; callables run on the object's thread.
    """

    __slots__ = ("_bit", "_entries", "_name", "_owner")

    def __init__(self, owner: WorkerSignals, name: str) -> None:
        # Weak: the port lives in the owner's __dict__, and a strong reference back would
        # be a cycle, leaving the QObject to the cyclic GC (on any thread).
        self._owner: Callable[[], WorkerSignals | None] = weakref.ref(owner)
        self._name = name
        self._bit = owner._bits[name]
        # Replaced, never mutated (copy-on-write), so an emission iterates a snapshot
        # without a lock.
        self._entries: list[_Entry] = []

    @property
    def qt(self) -> SignalInstance:
        """The real Qt ``SignalInstance`` behind this port (``QSignalSpy(port.qt)``).

        Raises:
            RuntimeError: The signals object was deleted.
        """
        owner = self._owner()
        if owner is None:
            raise RuntimeError(f"the WorkerSignals of {self!r} was deleted")
        instance: SignalInstance = getattr(owner, "_qt_" + self._name)
        return instance

    @property
    def signal(self) -> str:
        """The signal's signature as Qt's ``SIGNAL()`` spells it (``"2finished()"``)."""
        return "2" + WorkerSignals._signatures[self._name]

    def _connected(self) -> bool:
        """True if anything is connected (a Python callable or a Qt connection)."""
        return bool(self._entries) or self._qt_wired()

    def _qt_wired(self) -> bool:
        """True once a real Qt connection exists on this signal (see ``connectNotify``)."""
        owner = self._owner()
        return owner is not None and bool(owner._qt_connected & self._bit)

    def connect(
        self,
        slot: Callable[..., object] | SignalInstance | SignalPort,
        type: Qt.ConnectionType | None = None,
    ) -> Any:
        """Connect ``slot``; return a handle that :meth:`disconnect` accepts.

        Args:
            slot: A callable, a QObject's slot or method, or another signal.
            type: A ``Qt.ConnectionType`` (None: ``AutoConnection``); anything but
                auto/direct makes a Qt connection.

        Raises:
            TypeError: ``slot`` is neither callable nor a signal.
        """
        function: bool = slot.__class__ is _FunctionType
        if function and type is None:  # a lambda or a function: the common case
            entry = _Entry(cast(Callable[..., object], slot))
            with _ports_lock:
                self._entries = [*self._entries, entry]
            return entry
        if isinstance(slot, SignalPort):
            slot = slot.qt
        if type is None:
            kind = 0
        else:
            from PySide6.QtCore import Qt  # on use: see the note above _UNIQUE

            kind = int(Qt.ConnectionType(type).value)
        unique = bool(kind & _UNIQUE)
        if isinstance(slot, SignalInstance) or kind & ~_UNIQUE not in _DIRECT_KINDS:
            return self.qt.connect(slot) if type is None else self.qt.connect(slot, type)
        if not callable(slot):
            raise TypeError(
                f"{self._name}.connect() expects a callable or a signal, got {slot!r} "
                f"({slot.__class__.__name__}); pass the function itself, without calling it"
            )
        if isinstance(getattr(slot, "__self__", None), QObject):
            # A QObject's method or C++ slot: a real Qt connection is cheap at any scale
            # and keeps sender(), thread affinity and auto-disconnection.
            return self.qt.connect(slot) if type is None else self.qt.connect(slot, type)
        entry = _Entry(slot)
        with _ports_lock:
            if unique and any(e.matches(slot) for e in self._entries):
                return False
            self._entries = [*self._entries, entry]
        return entry

    def disconnect(self, slot: object = None) -> bool:
        """Disconnect ``slot`` (a callable or what :meth:`connect` returned), or everything.

        Returns:
            True if a connection was removed.  A slot that was never connected gives
            ``False`` with a ``RuntimeWarning``, as PySide does.
        """
        qt_wired = self._qt_wired()
        if slot is None:
            had = bool(self._entries)
            self._clear()
            return bool(self.qt.disconnect()) or had if qt_wired else had
        with _ports_lock:
            entries = self._entries
            for i, entry in enumerate(entries):
                if entry.matches(slot):
                    entry.dead = True
                    self._entries = entries[:i] + entries[i + 1 :]
                    return True
        if qt_wired and not isinstance(slot, _Entry):
            return bool(self.qt.disconnect(slot))
        warnings.warn(
            f'Failed to disconnect ({slot!r}) from signal "{self._name}"', RuntimeWarning, 2
        )
        return False

    def emit(self, *args: Any) -> None:
        """Emit the signal: call every connected slot with ``args``.

        On the object's own thread the callables run now; from another thread they are
        queued to it (Qt connections follow Qt's own rules).
        """
        owner = self._owner()
        if owner is None:
            return
        if self._entries:
            thread = owner.thread()
            if QThread.currentThread() is thread:
                self._call(args)
            else:
                engine = get_engine()
                if thread is engine.thread():
                    engine.post(lambda: self._call(args))
                else:
                    QTimer.singleShot(0, owner, lambda: self._call(args))
        if owner._qt_connected & self._bit:
            getattr(owner, "_qt_" + self._name).emit(*args)

    def _fire(self, args: tuple[Any, ...]) -> None:
        """Emit on the object's thread (the delivery engine's fast path)."""
        if self._entries:
            self._call(args)
        owner = self._owner()
        if owner is not None and owner._qt_connected & self._bit:
            getattr(owner, "_qt_" + self._name).emit(*args)

    def _call(self, args: tuple[Any, ...]) -> None:
        # Iterates a snapshot: a slot connected during this emission is not called by
        # it (as in Qt); one disconnected during it is marked dead and skipped.
        for entry in self._entries:
            if entry.dead:
                continue
            ref = entry.ref
            fn = entry.slot if ref is None else ref()
            if fn is None:  # a method whose object died: PySide drops it too
                self.disconnect(entry)
                continue
            arity = entry.arity
            try:
                if arity is None or arity >= len(args):
                    fn(*args)
                else:
                    fn(*args[:arity])
            except BaseException:  # as PySide: report, and the other slots still run
                sys.excepthook(*sys.exc_info())

    def _clear(self) -> None:
        """Drop every callable (after ``finished``: nothing is emitted any more)."""
        with _ports_lock:
            for entry in self._entries:
                entry.dead = True
            self._entries = []

    def __repr__(self) -> str:
        return f"<SignalPort {WorkerSignals._signatures[self._name]} of {self._owner()!r}>"


class _PortDescriptor:
    """The class attribute behind ``signals.<name>``: makes the instance's port once."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, cls: type | None = None) -> _PortDescriptor: ...
    @overload
    def __get__(self, obj: WorkerSignals, cls: type | None = None) -> SignalPort: ...
    def __get__(self, obj: WorkerSignals | None, cls: type | None = None) -> Any:
        if obj is None:
            return self
        name = self.name
        port = SignalPort(obj, name)
        obj.__dict__[name] = port  # later lookups find the port without this call
        return port


class WorkerSignals(QObject):
    """The signals of one task, always emitted on the GUI thread.

    Order per task: ``started`` (if it ran), any number of ``progress``/``status``,
    then exactly one of ``result``/``error``/``cancelled``, then ``finished``, exactly
    once.  Because they are emitted on the GUI thread, slots, lambdas and closures all
    run there, whatever thread the work ran on.

    Each attribute below is a :class:`SignalPort`: connect lambdas and functions freely,
    they cost the same with 100 000 tasks in flight as with ten (see the module
    docstring for why a bare PySide signal does not).

    Signals:
        started(): the task began running on a worker thread.
        progress(int, int): ``(current, total)``; ``total <= 0`` means unknown.  Coalesced:
            at most one per frame (~16 ms), and the last value always arrives before
            ``finished``.
        status(str): the latest status text, coalesced like ``progress``.
        result(object): the function's return value.
        error(object): a :class:`~casare_workers.TaskFailure` with the exception and its
            formatted traceback.
        cancelled(): the task was cancelled, superseded or shut down.
        finished(): always last, exactly once.

    Example:
        >>> handle = manager.submit(download, url)          # doctest: +SKIP
        >>> handle.signals.result.connect(self.show_page)  # doctest: +SKIP
    """

    # The real Qt signals, under their public names in the meta-object.
    _qt_started = Signal(name="started")
    # qint64, not int: Signal(int, int) overflows at 2**31 (byte counts of a download).
    _qt_progress = Signal("qint64", "qint64", name="progress")  # type: ignore[arg-type]
    _qt_status = Signal(str, name="status")
    _qt_result = Signal(object, name="result")
    _qt_error = Signal(object, name="error")
    _qt_cancelled = Signal(name="cancelled")
    _qt_finished = Signal(name="finished")

    started = _PortDescriptor()
    progress = _PortDescriptor()
    status = _PortDescriptor()
    result = _PortDescriptor()
    error = _PortDescriptor()
    cancelled = _PortDescriptor()
    finished = _PortDescriptor()

    _signatures: ClassVar[dict[str, str]] = {
        "started": "started()",
        "progress": "progress(qlonglong,qlonglong)",
        "status": "status(QString)",
        "result": "result(PyObject)",
        "error": "error(PyObject)",
        "cancelled": "cancelled()",
        "finished": "finished()",
    }
    #: One bit per signal, set in ``_qt_connected`` once a Qt connection exists.
    _bits: ClassVar[dict[str, int]] = {name: 1 << i for i, name in enumerate(_signatures)}
    _bit_of_method: ClassVar[dict[bytes, int]] = {
        name.encode(): bit for name, bit in _bits.items()
    }

    #: Bits of ``_bits`` for the signals that have a real Qt connection (set per object
    #: by ``connectNotify``; the class default spares every object an attribute write).
    _qt_connected = 0

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)

    def connectNotify(self, signal: QMetaMethod) -> None:
        """Note that a real Qt connection exists, so emitting must reach Qt too."""
        bit = self._bit_of_method.get(bytes(signal.name().data()), 0)
        self._qt_connected |= bit

    def _drop_connections(self) -> None:
        """Release every Python callable connected through the ports."""
        for name in self._signatures:
            port = self.__dict__.get(name)
            if port is not None:
                port._clear()


# -- the interface the task core delivers through (not public API) -----------------------------


def fire(port: SignalPort, args: tuple[Any, ...]) -> None:
    """Emit ``port`` with ``args`` on its object's thread (the delivery engine's path)."""
    port._fire(args)


def has_listeners(port: SignalPort) -> bool:
    """True if anything is connected to ``port`` (a Python callable or a Qt connection)."""
    return port._connected()


def drop_connections(signals: WorkerSignals) -> None:
    """Release every Python callable connected to ``signals`` (after ``finished``)."""
    signals._drop_connections()
