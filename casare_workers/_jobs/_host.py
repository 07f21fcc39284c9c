"""What a long job needs from the manager that tracks it: the ``JobHost`` protocol.

Long jobs sit above the manager: they import it, it never imports them.  A job reaches
its manager only through this protocol, which the manager's core satisfies structurally
(``casare_workers._manager.manager_core(manager)`` gives it); the manager in turn sees
the jobs only as the ``JobTracker`` it declares, which :class:`JobRegistry` implements::

    LongJob.start() ─► host.check_open(), host.owner_record(owner)
                    ─► registry_of(host).register(job)   (installs host.jobs once)
                          host.lock + record.tasks: the owner's death cancels the job
                          host.watchers: item models see the job
                          host.update_busy(): busy_changed
    manager.shutdown() ─► host.jobs.cancel_all(), host.jobs.join(deadline)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Protocol

from PySide6.QtCore import QObject

from .._engine import DeliveryEngine
from .._manager import JobTracker
from .._owners import OwnerRecord

__all__ = ("JobHost",)


class JobHost(Protocol):
    """What a long job needs from its ``WorkerManager`` (its core implements it)."""

    engine: DeliveryEngine
    #: Guards the owner records' ``tasks`` and the installation of ``jobs``.
    lock: threading.RLock
    #: Deques that receive every started task and job (item models drain them).
    watchers: list[deque[Any]]
    #: The manager's job tracker: a placeholder until the first job installs its registry.
    jobs: JobTracker

    def owner_record(self, owner: QObject) -> OwnerRecord:
        """The manager's record of ``owner`` (made on first use; watches its window)."""

    def check_open(self) -> None:
        """Raise ``ManagerShutdownError`` if the manager refuses new work."""

    def update_busy(self) -> None:
        """Set the manager's ``busy`` from its live tasks and jobs (GUI thread)."""
