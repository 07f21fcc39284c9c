"""The manager: ``WorkerManager``, its options, its statistics, the default manager.

Modules, top down: ``_default`` (``default_manager()``), ``_facade`` (``WorkerManager``,
the QObject face), ``_core`` (``ManagerCore``), ``_options`` (``TaskOptions``),
``_lifecycle`` (the final shutdown, the default manager's slot), ``_stats``.
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
