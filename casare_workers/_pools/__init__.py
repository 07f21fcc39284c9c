"""The pools: where a task runs once the manager has accepted it.

Modules, bottom up:

* ``_statistics``   ``PoolStatistics``: a frozen snapshot of one pool's counters
* ``_pool``         the ``Pool`` protocol the manager talks to, ``TaskCounters``, and
                    ``build_pool`` (a pool kind -> its backend, imported on first use)
* ``_threadpool``   bounded daemon-thread pools with priorities
* ``_map``          ``MapHandle``: one task over many items; its chunk interface serves
                    every backend
* ``_remote``       what process and Dask pools share
* ``_processpool``  worker processes that survive crashes (``_processworker`` runs inside
                    them)
* ``_daskpool``     a pool on a Dask cluster (optional: ``casare_workers[dask]``;
                    ``_daskworker`` runs on the cluster)

The pools build on the task core (``casare_workers._core``) and drive a task only
through ``TaskHandle``'s named interface (``mark_queued``, ``begin``, ``succeed``,
``fail``, ``report_progress`` ...).  Nothing here imports the manager, long jobs or the
asyncio bridge.
"""

from __future__ import annotations

__all__ = ()
