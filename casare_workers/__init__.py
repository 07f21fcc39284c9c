"""casare_workers: a Qt-native worker framework for PySide6 applications.

Layers, bottom up (one private module each):

* ``_selfcheck``  refuses a Qt binding that corrupts reference counts (checked at import)
* ``_engine``     the delivery engine: batches results and coalesced progress onto the
                  GUI thread within a time budget
* ``_task``       TaskHandle / TaskContext / TaskError: one task's state machine
* ``_threadpool`` bounded daemon-thread pools with priorities
* ``_processpool`` worker processes that survive crashes (``_processworker`` runs inside
                  them; ``_remote`` holds what process and Dask pools share)
* ``_daskpool``   a pool on a Dask cluster (optional: ``casare_workers[dask]``)
* ``_map``        chunked ``map`` over a pool
* ``_worker``     Worker (a QRunnable) + WorkerSignals, the pattern PySide users know
* ``_manager``    WorkerManager: named pools, options (owner, key, timeout), statistics,
                  shutdown
* ``pytest_plugin`` fixtures for testing code that uses the library
"""

from __future__ import annotations

from ._selfcheck import check_bool_leak

check_bool_leak()

from ._config import PoolConfig  # noqa: E402
from ._engine import DeliveryEngine, get_engine  # noqa: E402
from ._errors import (  # noqa: E402
    AlreadyStartedError,
    BlockingCallError,
    BrokenBindingError,
    CasareWorkersError,
    ClusterUnavailableError,
    ConfigurationError,
    ManagerShutdownError,
    NoApplicationError,
    SerializationError,
    TaskCancelledError,
    TaskTimeoutError,
    UnknownPoolError,
    WorkerCrashedError,
)
from ._manager import (  # noqa: E402
    ManagerStatistics,
    ShutdownReport,
    TaskOptions,
    WorkerManager,
    default_manager,
    set_default_manager,
)
from ._map import MapHandle  # noqa: E402
from ._signals import WorkerSignals  # noqa: E402
from ._state import TaskState  # noqa: E402
from ._task import TaskContext, TaskError, TaskHandle  # noqa: E402
from ._threadpool import PoolStatistics  # noqa: E402
from ._worker import Worker  # noqa: E402

__version__ = "0.1.0"


__all__ = (
    "AlreadyStartedError",
    "BlockingCallError",
    "BrokenBindingError",
    "CasareWorkersError",
    "ClusterUnavailableError",
    "ConfigurationError",
    "DeliveryEngine",
    "ManagerShutdownError",
    "ManagerStatistics",
    "MapHandle",
    "NoApplicationError",
    "PoolConfig",
    "PoolStatistics",
    "SerializationError",
    "ShutdownReport",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskHandle",
    "TaskOptions",
    "TaskState",
    "TaskTimeoutError",
    "UnknownPoolError",
    "Worker",
    "WorkerCrashedError",
    "WorkerManager",
    "WorkerSignals",
    "default_manager",
    "get_engine",
    "set_default_manager",
)

# Show the public path in reprs, tracebacks and docs (not the private module).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
