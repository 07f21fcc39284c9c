"""The manager: ``WorkerManager``, its options, its statistics, the default manager.

Modules, top down (each imports only the ones below it)::

    _default    default_manager(), set_default_manager()
    _facade     WorkerManager: the QObject face (signals, parent); manager_core()
       │  holds          ▲ signals (ManagerFace), weakly
       ▼                 │
    _core       ManagerCore: options, submit / map / start ─► enqueue
    _hosting      └ Hosting: pools, what tasks report (TaskHost), busy, statistics,
                    shutdown, abandon
    _book           └ TaskBook: tasks in flight by owner and key, owner records, jobs
    _options    TaskOptions, bound to a Submitter (the core)
    _lifecycle  the final shutdown (application destroyed, interpreter exit), the quit
                deadline, interpreter_exiting(), the default manager's slot
    _stats      ManagerStatistics, JobStatistics, ShutdownReport, JobTracker

The core is one object built in three layers (``TaskBook`` ─► ``Hosting`` ─►
``ManagerCore``) rather than three objects: submit, delivery and bookkeeping run for
every task, and a layer reaches the others' state as its own.  The core knows its face
only through the ``ManagerFace`` protocol, ``TaskOptions`` knows the core only as a
``Submitter``, and the final shutdown knows cores only as ``Stoppable``: no import
cycle, and no module reaches into another's private names.  The default manager's slot
sits below the facade (a new manager adopts itself) and ``default_manager()`` above it
(it may create one).

Long jobs and the asyncio bridge sit above the manager: they reach a manager's core
through ``manager_core(manager)``, as the ``JobHost`` and ``ExecutorHost`` they declare.
"""

from __future__ import annotations

from ._default import default_manager, set_default_manager
from ._facade import WorkerManager, manager_core
from ._options import TaskOptions
from ._stats import JobStatistics, JobTracker, ManagerStatistics, ShutdownReport

__all__ = (
    "JobStatistics",
    "JobTracker",
    "ManagerStatistics",
    "ShutdownReport",
    "TaskOptions",
    "WorkerManager",
    "default_manager",
    "manager_core",
    "set_default_manager",
)
