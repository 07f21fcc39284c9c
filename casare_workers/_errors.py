"""Exceptions raised by casare_workers.

The user's own exceptions are never wrapped: ``handle.result()`` and ``await handle``
re-raise the original exception object, traceback included.  The classes below are
raised by the library itself, each mixing in the builtin it refines so existing
``except`` clauses keep working::

    Exception
     └── CasareWorkersError
          ├── BrokenBindingError          (ImportError)    the Qt binding drops references
          ├── ConfigurationError          (ValueError)     a size, timeout or option is invalid
          ├── UnknownPoolError            (LookupError)    no pool has that name
          ├── ManagerShutdownError        (RuntimeError)   work submitted after shutdown()
          ├── AlreadyStartedError         (RuntimeError)   a worker or job started twice
          ├── BlockingCallError           (RuntimeError)   a wait that would freeze the GUI
          ├── NoApplicationError          (RuntimeError)   no QCoreApplication to deliver to
          ├── InitializerError            (RuntimeError)   a LoopThread's initializer raised
          ├── ThreadClosedError           (RuntimeError)   work sent to a closed LoopThread
          ├── NoEventLoopError            (RuntimeError)   no asyncio loop where one is needed
          ├── TaskTimeoutError            (TimeoutError)   a task ran past its timeout
          ├── TaskCancelledError          (concurrent.futures.CancelledError)
          ├── SerializationError          (pickle.PicklingError)  work or a result cannot
          │                                                  cross a process boundary
          ├── WorkerCrashedError          (BrokenProcessPool)  the worker process died
          └── ClusterUnavailableError     (ConnectionError)  the Dask scheduler is unreachable
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import TYPE_CHECKING

__all__ = (
    "AlreadyStartedError",
    "BlockingCallError",
    "BrokenBindingError",
    "CasareWorkersError",
    "ClusterUnavailableError",
    "ConfigurationError",
    "InitializerError",
    "ManagerShutdownError",
    "NoApplicationError",
    "NoEventLoopError",
    "SerializationError",
    "TaskCancelledError",
    "TaskTimeoutError",
    "ThreadClosedError",
    "UnknownPoolError",
    "WorkerCrashedError",
    "describe_exception",
)


class CasareWorkersError(Exception):
    """Base class of every exception raised by casare_workers itself."""


class BrokenBindingError(CasareWorkersError, ImportError):
    """Raised at import when the installed Qt binding corrupts reference counts.

    The self-check emits a few signals and watches ``sys.getrefcount(True)``; PySide6
    6.12.0 on CPython 3.11 loses one reference per emit and would abort the interpreter
    later with ``Fatal Python error: bool_dealloc``.  The message names the fix.
    """


class ConfigurationError(CasareWorkersError, ValueError):
    """Raised when a pool size, timeout, priority or other option is invalid."""


class UnknownPoolError(CasareWorkersError, LookupError):
    """Raised when work is submitted to a pool name the manager does not have."""


class ManagerShutdownError(CasareWorkersError, RuntimeError):
    """Raised by ``submit``/``map``/``start`` after the manager was shut down."""


class AlreadyStartedError(CasareWorkersError, RuntimeError):
    """Raised when a ``Worker`` (or a long job) is started a second time."""


class BlockingCallError(CasareWorkersError, RuntimeError):
    """Raised instead of blocking the GUI thread (or an event loop) on itself.

    For example ``handle.result()`` with no timeout on the GUI thread while the task is
    still running: the window would freeze.  Connect to the handle's signals, use
    ``handle.then(...)`` or ``await handle`` instead.
    """


class NoApplicationError(CasareWorkersError, RuntimeError):
    """Raised when delivery to the GUI thread is needed but no QCoreApplication exists."""


class InitializerError(CasareWorkersError, RuntimeError):
    """Raised for work sent to a ``LoopThread`` whose initializer raised.

    The initializer's own exception is attached as ``__cause__``.  Every call queued
    before the failure and every later ``submit`` get this error; the finalizer does not
    run (there was nothing to undo).  Create a new ``LoopThread`` once the cause is fixed.
    """


class ThreadClosedError(CasareWorkersError, RuntimeError):
    """Raised by ``LoopThread.submit``/``call`` after ``close()`` (or its owner died).

    A closed thread never runs new work (calls still queued at close are cancelled);
    create a new ``LoopThread``.
    """


class NoEventLoopError(CasareWorkersError, RuntimeError):
    """Raised by the asyncio bridge when no asyncio event loop is there to run on.

    For example an async slot called while no loop runs, or ``run_coroutine_sync`` from a
    worker thread of an application that never started its qasync loop.  The message
    names the fix (start the loop, or call ``attach_loop``).
    """


class TaskTimeoutError(CasareWorkersError, TimeoutError):
    """The error a task ends with when it runs longer than its ``timeout``.

    A Python thread cannot be killed: the function keeps running until it returns or
    checks ``ctx.cancelled``; its eventual result is discarded.
    """


class TaskCancelledError(CasareWorkersError, concurrent.futures.CancelledError):
    """Raised by ``ctx.raise_if_cancelled()`` and by ``result()`` of a cancelled task.

    It is a ``concurrent.futures.CancelledError``, so existing handlers keep working.
    """


if TYPE_CHECKING:
    import pickle
    from concurrent.futures.process import BrokenProcessPool

    class SerializationError(CasareWorkersError, pickle.PicklingError):
        """Work, a result or an exception cannot cross a process boundary (see below)."""

    class WorkerCrashedError(CasareWorkersError, BrokenProcessPool):
        """The worker process running a task died (defined on first use, below)."""


# The two errors of the process and Dask pools refine classes of modules that
# ``import casare_workers`` does not otherwise need: ``pickle`` (~6 ms) and
# ``concurrent.futures.process``, which imports multiprocessing (tens of milliseconds).
# Each is defined on first use (by those pools, or by a caller naming it) instead.


def _define_serialization_error() -> type[CasareWorkersError]:
    import pickle

    class SerializationError(CasareWorkersError, pickle.PicklingError):
        """Work, a result or an exception cannot cross a process (or machine) boundary.

        Raised by ``submit``/``map`` on a process or Dask pool when the function or an
        argument cannot be pickled (the message names which one), before anything is
        queued.  A task ends with it when its result cannot be sent back, or when the
        exception it raised cannot be rebuilt in the GUI process (the message then
        carries the original exception's type and text, and the remote traceback is
        attached as ``__cause__``).
        """

    return SerializationError


def _define_worker_crashed_error() -> type[CasareWorkersError]:
    from concurrent.futures.process import BrokenProcessPool

    class WorkerCrashedError(CasareWorkersError, BrokenProcessPool):
        """The worker process running a task died (``os._exit``, a segfault, killed by the OS).

        Only the tasks that process was running end with it; the pool starts a new worker
        process and the queued tasks go on.  The message names the process, its exit code or
        signal.  It is a ``concurrent.futures.process.BrokenProcessPool``, so existing
        handlers keep working.
        """

    return WorkerCrashedError


_DEFINED_ON_FIRST_USE = {
    "SerializationError": _define_serialization_error,
    "WorkerCrashedError": _define_worker_crashed_error,
}
_define_lock = threading.Lock()


def __getattr__(name: str) -> object:
    define = _DEFINED_ON_FIRST_USE.get(name)
    if define is not None:
        with _define_lock:  # one class, whichever thread names it first
            cls = globals().get(name)
            if cls is None:
                cls = define()
                # Pickled by reference (module and qualified name), as the other classes
                # here are once ``casare_workers`` has renamed their module.
                cls.__qualname__ = name
                cls.__module__ = __name__.rpartition(".")[0]
                globals()[name] = cls
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ClusterUnavailableError(CasareWorkersError, ConnectionError):
    """A Dask pool cannot reach its scheduler.

    Raised by ``submit``/``map`` when the pool knows the scheduler is unreachable (so
    nothing is queued into the void), and the error a task ends with when the connection
    is lost before the task could be handed to the cluster.
    """


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: text"`` for an error message, even when ``str(exc)`` itself raises.

    A user's exception can have a broken (or hostile) ``__str__``; formatting it into
    one of the library's own messages must never raise instead, or the failure being
    reported (a failed initializer, a result that cannot travel) would be lost and
    whatever was to be resolved would stay pending for ever.
    """
    name = type(exc).__qualname__
    try:
        text = str(exc)
    except BaseException as why:  # any failure of the user's code is contained
        return f"{name} (its str() raised {type(why).__qualname__})"
    return f"{name}: {text}" if text else name
