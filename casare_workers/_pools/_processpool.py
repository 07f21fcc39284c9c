"""A pool of worker processes that survives crashes: the manager's ``"cpu"`` pool.

Threads cannot run pure-Python code on more than one core; processes can, and a
process that crashes (a segfault in an OCR library, ``os._exit``, the OS killing it
for lack of memory) takes only its own work down.  Data flow::

    any thread (usually GUI)       service thread (one per pool)          worker processes
    ------------------------       -----------------------------          ----------------
    submit: pickle fn + args ────► heap of jobs ── a slot is free ──► its executor.submit(
      (SerializationError here,      (priority, FIFO)                    run_call, bytes)
       nothing is queued)                 ▲                                     │
                                          ├── executor done callback ◄──────────┤ outcome bytes
                                          │   (or BrokenProcessPool: a crash)   │
                                          ├── worker's pipe ◄── coalesced progress (RemoteContext)
    cancel / timeout / owner ──wake──────►├── cancel flag + task id ──► ctx.cancelled, ctx.wait
      destroyed / shutdown                └── cancel_grace passed: kill that process; the
                                              slot starts a new one for its next job
    signals on the GUI thread ◄── engine ◄── task.succeed | fail (WorkerCrashedError) | cancel

The pool is a chain of layers over the remote outline (``_remote.RemotePool``), one
module each: ``_processslots`` (the slots and their worker processes: why one
``ProcessPoolExecutor`` per process), ``_processresults`` (what comes back: progress,
outcomes, crashes, start-up failures), ``_processservice`` (the service thread, its
clocks, the exit hook) and this module, the pool's face (sizing, observing).  What runs
inside a worker is ``_processworker``.

Why ``ProcessPoolExecutor`` rather than loky: measured on this project's 2-core
machine (``benchmarks/bench_executors.py``; table in ``docs/cpu-bound.md``), loky was
slower on every axis that matters here (start-up, round trip, bursts, and crash
detection sometimes 100 ms later) and has the same whole-pool failure on a crash; its
main extra, cloudpickle for lambdas, would weaken the "refused at submit" guarantee.
The standard library it is.

Start method: ``spawn``, on every platform.  Forking a process that runs Qt copies the
Qt state (threads, locks held by other threads) into the child, which is undefined
behaviour; ``spawn`` starts a fresh interpreter and is what Windows and macOS use
anyway, so the pool behaves the same everywhere.  ``forkserver`` (POSIX only) rebuilt a
crashed worker in half the time (50 ms vs 110 ms measured), but a crash is rare and one
behaviour on every platform is worth more.
Consequence for users: a task's function must be importable by the worker (defined
at module level) and the application's entry point must be guarded by
``if __name__ == "__main__":``.  Without the guard every worker dies starting up; a
worker says when it is up (``running`` turns ``_processworker.UP``, and a
message), so such a death is told apart from a crash: it fails the task and the
queue with an error naming the missing guard instead of respawning for ever (see
``_processresults``).  Being up is also when a task's timeout starts: it counts the
run time, not the start-up.

Cancelling a running task ends it at once as cancelled (as on threads); its process
sees ``ctx.cancelled`` (and ``ctx.wait`` returns early) and is given ``cancel_grace``
seconds to return; after that the process is killed and the slot starts a new one for
its next job.  Timeouts do the same.  Other slots are never affected.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import TYPE_CHECKING

from ._processservice import ProcessService
from ._processslots import PIPELINE
from ._remote import CHUNKS_PER_WORKER

if TYPE_CHECKING:
    from .._config import PoolConfig

__all__ = ("CHUNKS_PER_WORKER", "PIPELINE", "ProcessPool", "available_memory", "size_for_memory")

logger = logging.getLogger("casare_workers")


def available_memory() -> int | None:
    """Bytes of memory available to new processes, or None if unknown.

    Uses psutil when it is installed, else ``/proc/meminfo`` (Linux).
    """
    try:
        psutil = importlib.import_module("psutil")  # optional: used when installed
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def size_for_memory(max_workers: int, per_worker: int | None, available: int | None) -> int:
    """How many workers fit: ``available / (per_worker * 1.5)``, in ``[1, max_workers]``."""
    if per_worker is None or available is None:
        return max_workers
    return max(1, min(max_workers, int(available // (per_worker * 1.5))))


class ProcessPool(ProcessService):
    """Worker processes behind a manager pool of ``kind="process"`` (the ``"cpu"`` pool).

    Internal: users reach it through ``WorkerManager``.  Thread-safe.  Nothing is
    started until the first task: no thread, no process.
    """

    kind = "process"

    def __init__(self, name: str, config: PoolConfig) -> None:
        available = available_memory() if config.memory_per_worker is not None else None
        max_workers = size_for_memory(config.max_workers, config.memory_per_worker, available)
        if max_workers < config.max_workers:
            logger.info(
                "pool %r: %d worker processes instead of %d (%.0f MiB available, %.0f MiB "
                "per worker x 1.5)",
                name,
                max_workers,
                config.max_workers,
                (available or 0) / 2**20,
                (config.memory_per_worker or 0) / 2**20,
            )
        super().__init__(name, max_workers, config)

    @property
    def timeout_fate(self) -> str:
        """What happens to a timed-out task's process (completes ``TaskTimeoutError``)."""
        return (
            "its worker process sees ctx.cancelled and is killed and replaced if it has "
            f"not returned within the pool's cancel_grace of {self.cancel_grace} s"
        )

    def still_running(self) -> list[str]:
        """Names of the tasks handed to a worker process that is still busy."""
        with self.lock:
            return [job.task.name for slot in self._slots for job in slot.jobs]

    def threads(self) -> list[threading.Thread]:
        """The pool's own live thread (the executors' threads end before it does)."""
        service = self._service
        return [service] if service is not None and service.is_alive() else []

    def join(self, deadline: float) -> bool:
        """Wait for the processes to exit until ``deadline``, then kill what is left.

        Unlike threads, processes can always be stopped: past the deadline, every busy
        worker process is killed (its task ends cancelled with reason "shutdown") and
        every task still queued is cancelled, so no process outlives the pool.
        """
        return super().join(deadline)

    def __repr__(self) -> str:
        return f"<ProcessPool {self.name!r} max_workers={self.max_workers}>"
