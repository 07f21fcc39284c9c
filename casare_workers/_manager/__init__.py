"""The manager: ``WorkerManager`` and what it is made of (being split into modules)."""

from __future__ import annotations

from ._core import (
    JobStatistics,
    JobTracker,
    ManagerStatistics,
    ShutdownReport,
    TaskOptions,
    WorkerManager,
    default_manager,
    manager_core,
    set_default_manager,
)

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
