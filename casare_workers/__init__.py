"""casare_workers: a Qt-native worker framework for PySide6 applications.

Layers, bottom up (docs/architecture.md draws them; tests/test_architecture.py checks
that imports point down, that no module reads another's private names, and module size):

* foundation: ``_errors``, ``_validation``, ``_config``, ``_introspect``, ``_report``,
  ``_selfcheck`` (refuses a Qt binding that corrupts reference counts, at import)
* Qt plumbing: ``_engine`` (the delivery engine: results and coalesced progress onto the
  GUI thread in batches, within a time budget, with a rescuer for lost wake-ups),
  ``_signals`` (WorkerSignals and their ports), ``_owners`` and ``_closing`` (an owner's
  death and its window's close), ``_gc``, ``_watchdog`` (timeouts)
* ``_core/``    one task: its single outcome, the interface pools drive it through, its
  context and its delivery (TaskHandle, TaskContext, TaskFailure, TaskState)
* ``_pools/``   thread pools with priorities, ``map``, worker processes that survive
  crashes, a Dask cluster (optional: ``casare_workers[dask]``)
* ``_worker``   Worker (a QRunnable) + WorkerSignals, the pattern PySide users know;
  ``_progress``: to_percent
* ``_manager/`` WorkerManager: named pools, options (owner, key, timeout), statistics,
  shutdown, the default manager
* loaded on first use: ``_jobs/`` (LongJob, LoopThread, SubprocessJob / run_process),
  ``_bridge/`` (the qasync bridge: ``await`` on handles, async slots, task groups, the
  pools as the loop's executor, sync<->async without nested loops; imports asyncio),
  ``_model`` / ``_delegate`` (TaskTableModel, ProgressBarDelegate; import QtWidgets)
* ``lowlevel`` (the engine, the GUI-thread collector), ``pytest_plugin`` (fixtures)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._selfcheck import check_bool_leak

check_bool_leak()

from ._config import PoolConfig  # noqa: E402
from ._core._context import TaskContext  # noqa: E402
from ._core._failure import TaskFailure  # noqa: E402
from ._core._state import TaskState  # noqa: E402
from ._errors import (  # noqa: E402
    AlreadyStartedError,
    BlockingCallError,
    BrokenBindingError,
    CasareWorkersError,
    ClusterUnavailableError,
    ConfigurationError,
    InitializerError,
    ManagerShutdownError,
    NoApplicationError,
    NoEventLoopError,
    TaskCancelledError,
    TaskTimeoutError,
    ThreadClosedError,
    UnknownPoolError,
)
from ._gc import collect_garbage_on_gui_thread  # noqa: E402
from ._manager import (  # noqa: E402
    JobStatistics,
    ManagerStatistics,
    ShutdownReport,
    TaskOptions,
    WorkerManager,
    default_manager,
    set_default_manager,
)
from ._pools._map import MapHandle  # noqa: E402
from ._progress import to_percent  # noqa: E402
from ._signals import SignalPort, WorkerSignals  # noqa: E402

#: The old name of :class:`TaskFailure` (a record, not an exception); kept as an alias.
TaskError = TaskFailure
from ._core._handle import TaskHandle  # noqa: E402
from ._pools._statistics import PoolStatistics  # noqa: E402
from ._worker import Worker  # noqa: E402

# Loaded on first use (PEP 562): the parts only some applications need, so that
# ``import casare_workers`` costs little more than ``import PySide6.QtCore``.  The asyncio
# bridge imports asyncio, long jobs and subprocesses import subprocess and the asyncio
# machinery, the table model and delegate import QtGui and QtWidgets.  Type checkers and
# ``from casare_workers import *`` see every name as usual.
_LAZY: dict[str, str] = {
    "JobContext": "._jobs._context",
    "LongJob": "._jobs._longjob",
    "LoopThread": "._jobs._loopthread",
    "LoopThreadOptions": "._jobs._loopthread",
    "PoolExecutor": "._bridge",
    "ProcessResult": "._jobs._process",
    "ProgressBarDelegate": "._delegate",
    "SubprocessJob": "._jobs._subprocess",
    "TaskGroup": "._bridge",
    "TaskTableModel": "._model",
    "async_slot": "._bridge",
    "asyncify": "._bridge",
    "attach_loop": "._bridge",
    "open_dialog": "._bridge",
    "run_coroutine_sync": "._bridge",
    "run_in_loop": "._bridge",
    "run_process": "._jobs._process",
    "wait_signal": "._bridge",
    "WorkerCrashedError": "._errors",
    "SerializationError": "._errors",
}

if TYPE_CHECKING:
    from ._bridge import (
        PoolExecutor,
        TaskGroup,
        async_slot,
        asyncify,
        attach_loop,
        open_dialog,
        run_coroutine_sync,
        run_in_loop,
        wait_signal,
    )
    from ._delegate import ProgressBarDelegate
    from ._errors import SerializationError, WorkerCrashedError
    from ._jobs._context import JobContext
    from ._jobs._longjob import LongJob
    from ._jobs._loopthread import LoopThread, LoopThreadOptions
    from ._jobs._process import ProcessResult, run_process
    from ._jobs._subprocess import SubprocessJob
    from ._model import TaskTableModel

__version__ = "0.1.0"


__all__ = (
    "AlreadyStartedError",
    "BlockingCallError",
    "BrokenBindingError",
    "CasareWorkersError",
    "ClusterUnavailableError",
    "ConfigurationError",
    "InitializerError",
    "JobContext",
    "JobStatistics",
    "LongJob",
    "LoopThread",
    "LoopThreadOptions",
    "ManagerShutdownError",
    "ManagerStatistics",
    "MapHandle",
    "NoApplicationError",
    "NoEventLoopError",
    "PoolConfig",
    "PoolExecutor",
    "PoolStatistics",
    "ProcessResult",
    "ProgressBarDelegate",
    "SerializationError",
    "ShutdownReport",
    "SignalPort",
    "SubprocessJob",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskFailure",
    "TaskGroup",
    "TaskHandle",
    "TaskOptions",
    "TaskState",
    "TaskTableModel",
    "TaskTimeoutError",
    "ThreadClosedError",
    "UnknownPoolError",
    "Worker",
    "WorkerCrashedError",
    "WorkerManager",
    "WorkerSignals",
    "async_slot",
    "asyncify",
    "attach_loop",
    "collect_garbage_on_gui_thread",
    "default_manager",
    "open_dialog",
    "run_coroutine_sync",
    "run_in_loop",
    "run_process",
    "set_default_manager",
    "to_percent",
    "wait_signal",
)

# Show the public path in reprs, tracebacks and docs (not the private module).
for _name in __all__:
    if _name not in _LAZY:
        globals()[_name].__module__ = __name__
del _name


def __getattr__(name: str) -> object:
    """Load a lazily imported name; the low-level names that moved to ``lowlevel``."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        if isinstance(value, type) or callable(value):
            value.__module__ = __name__
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name in ("DeliveryEngine", "GuiGarbageCollector", "get_engine"):
        import warnings

        from . import lowlevel

        warnings.warn(
            f"casare_workers.{name} is deprecated; import it from casare_workers.lowlevel",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(lowlevel, name)
    raise AttributeError(f"module 'casare_workers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
