"""The worker processes of a process pool: slots, and starting, retiring and killing them.

A pool has ``max_workers`` slots (:class:`Slot`); each holds at most one
:class:`WorkerProcess` and the jobs handed to it (one task, or up to :data:`PIPELINE`
chunks of the same ``map``).  A worker is started on demand for a job, retired when it
has been idle for ``idle_timeout`` (or was replaced, or its pool stops), and killed when
a job it runs outlives ``cancel_grace`` after its task ended, or when it will not exit.

Why one ``ProcessPoolExecutor`` per slot, each with one process: when any process of a
``ProcessPoolExecutor`` dies, the executor marks itself broken, fails *every* pending
future and terminates its other processes (CPython does this on purpose: its queues
may be corrupt).  With one process per executor, a crash fails exactly the one call
that process was running; the other slots never notice, and queued work stays in the
pool's own queue (with priorities, and cancellable while queued) instead of the
executor's.  A worker marks in shared memory which job it runs, so a crash fails that
one and the other goes back to the queue: nothing in flight is lost or blamed wrongly.

Nothing here waits on a process without a bound: a retired worker's exit is watched by
the service thread (its sentinel), and one that has not exited :data:`RETIRE_WAIT`
seconds later is killed.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from . import _processworker
from ._remote import RemotePool
from ._remotejob import RemoteJob

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from .._config import PoolConfig

__all__ = (
    "KILL_WAIT",
    "PIPELINE",
    "RETIRE_WAIT",
    "SPAWN",
    "ProcessJob",
    "ProcessSlots",
    "Slot",
    "WorkerProcess",
    "close_connection",
    "exit_description",
)

#: Jobs handed to one worker process at once: the one it runs, and (chunks of the
#: same ``map`` only) the next one, waiting in its pipe.  The worker goes from one to
#: the next without waiting for the pool; a crash fails only the one it was running
#: (it says which, in shared memory), the other one is put back in the queue.
PIPELINE = 2
#: Seconds ``join`` waits for killed processes after its deadline.
KILL_WAIT = 5.0
#: Seconds a retired worker process (idle too long, replaced, or its pool shutting down)
#: has to exit once told to.  One that does not, usually because a task left a
#: non-daemon thread running in it, is killed: it must not hold its pool's service
#: thread, the pool's shutdown or the interpreter's exit.
RETIRE_WAIT = 2.0

#: Every worker process is spawned (see ``_processpool``: never fork a Qt process).
SPAWN = multiprocessing.get_context("spawn")


class WorkerProcess:
    """One worker process: its single-process executor and what it shares with the pool."""

    __slots__ = (
        "child_conn",
        "conn",
        "executor",
        "failed_start",
        "flag",
        "kill_reason",
        "killed",
        "process",
        "ready",
        "retire_by",
        "retired",
        "running",
        "started_at",
        "watcher",
    )

    def __init__(
        self,
        executor: ProcessPoolExecutor,
        conn: Connection,
        child_conn: Connection,
        flag: Any,
        running: Any,
    ) -> None:
        self.executor = executor
        self.conn: Connection | None = conn
        self.child_conn: Connection | None = child_conn
        self.flag = flag  # shared: the id of a task to cancel (written here, read there)
        self.running = running  # shared: the seq of the job it runs (written there)
        self.process: BaseProcess | None = None
        self.killed = False
        self.kill_reason = "cancelled"
        self.retired = False
        self.retire_by = 0.0
        self.ready = False  # it said it is up (its first message)
        self.failed_start: bool | None = None  # died starting up: give up? (decided once)
        self.started_at = time.monotonic()
        # The executor's management thread, kept once the executor lets go of it: it
        # reaps the process after it has exited.
        self.watcher: threading.Thread | None = None


class ProcessJob(RemoteJob):
    """A :class:`RemoteJob` handed to a worker process."""

    __slots__ = ("partial", "seq", "watch_pending", "worker")

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # as RemoteJob's
        super().__init__(*args, **kwargs)
        self.partial = 0  # items of its chunk done so far (the worker's progress)
        self.seq = 0  # the number of the call that ships it (a new one if put back)
        self.watch_pending = False  # its timeout starts once its worker is up
        self.worker: WorkerProcess | None = None


class Slot:
    """A place for one worker process and the (at most :data:`PIPELINE`) jobs handed to it.

    Owned by the service thread; the fields read by ``statistics`` from other threads
    are written with the pool's lock held.
    """

    __slots__ = ("idle_since", "jobs", "kill_at", "worker")

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None
        self.jobs: list[ProcessJob] = []
        self.kill_at: float | None = None
        self.idle_since = 0.0

    def abandoned(self) -> list[ProcessJob]:
        """The jobs whose task has ended here while the worker still holds them."""
        return [job for job in self.jobs if job.task.done()]


class ProcessSlots(RemotePool):
    """A process pool's first layer over the remote outline: its slots and processes."""

    abort_wait = KILL_WAIT
    job_class = ProcessJob

    def __init__(self, name: str, max_workers: int, config: PoolConfig) -> None:
        super().__init__(name, max_workers)
        self._idle_timeout = config.idle_timeout
        self.cancel_grace = config.cancel_grace
        self._slots = [Slot() for _ in range(max_workers)]
        # Workers told to exit whose process has not ended yet (guarded by the lock).
        self._retiring: list[WorkerProcess] = []
        self._hurry = False  # kill retiring workers now (the shutdown's time is up)

    def _place_for(self, job: RemoteJob) -> Slot | None:
        # Called with the lock held: an idle slot first.  Else a map chunk may wait in
        # the pipe of a worker busy with a chunk of the same map: that worker goes on
        # to it without a hand-off through this process (which, on a saturated
        # machine, costs a scheduling delay per chunk).  Never an independent task:
        # it would be stuck behind a long task while another worker falls idle.
        for slot in self._slots:
            if not slot.jobs:
                return slot
        if job.map is None:
            return None
        for slot in self._slots:
            worker = slot.worker
            if (
                len(slot.jobs) < PIPELINE
                and worker is not None
                and not worker.killed
                and all(other.task is job.task for other in slot.jobs)
                and not slot.abandoned()
            ):
                return slot
        return None

    def _open(self, slot: Slot) -> WorkerProcess:
        """Start a worker process in ``slot`` (its executor starts it on its first call)."""
        parent, child = SPAWN.Pipe(duplex=True)
        flag = SPAWN.RawValue("q", 0)
        running = SPAWN.RawValue("q", 0)
        executor = ProcessPoolExecutor(
            1,
            mp_context=SPAWN,
            initializer=_processworker.initialize,
            initargs=(child, flag, running),
        )
        worker = WorkerProcess(executor, parent, child, flag, running)
        with self.lock:
            slot.worker = worker
            slot.idle_since = time.monotonic()
        return worker

    def _retire(self, slot: Slot, worker: WorkerProcess, *, restart: bool) -> None:
        """Tell a worker's process to exit (once), without waiting for it.

        Its sentinel tells the service thread when it has exited; one still running
        :data:`RETIRE_WAIT` seconds later is killed (``_handle_deadlines``).  Waiting here
        instead (``shutdown(wait=True)``) would hang the whole pool on a process that
        cannot exit, e.g. one in which a task left a non-daemon thread running.
        """
        with self.lock:
            if worker.retired:
                return
            worker.retired = True
            if slot.worker is worker:
                slot.worker = None
            if restart:
                self._restarts += 1
            if worker.process is not None:
                worker.retire_by = time.monotonic() + RETIRE_WAIT
                self._retiring.append(worker)
        for conn in (worker.conn, worker.child_conn):
            if conn is not None:
                close_connection(conn)
        worker.conn = worker.child_conn = None
        watcher = getattr(worker.executor, "_executor_manager_thread", None)
        worker.watcher = watcher if isinstance(watcher, threading.Thread) else None
        worker.executor.shutdown(wait=False, cancel_futures=True)

    def _retire_crashed(self, slot: Slot, worker: WorkerProcess) -> str:
        """Retire a worker whose process died; return how it ended, for the error message."""
        self._retire(slot, worker, restart=True)
        # The executor's own thread reaps the dead process (then ends): once it has,
        # the exit code is known.  Bounded, like every wait on a process here.
        if worker.watcher is not None:
            worker.watcher.join(KILL_WAIT)
        process = worker.process
        if process is None:
            return "(not started)"
        return f"(pid {process.pid}) {exit_description(process.exitcode)}"

    def _kill(self, worker: WorkerProcess, reason: str) -> None:
        # Any thread.  The executor then fails the worker's futures (BrokenProcessPool).
        process = worker.process
        if process is None or worker.killed:
            return
        worker.killed = True
        worker.kill_reason = reason
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):
            pass

    def _retiring_now(self) -> list[WorkerProcess]:
        with self.lock:
            return list(self._retiring)

    def _exited(self, worker: WorkerProcess) -> None:
        # The process of a retired worker has ended.  Its executor's thread reaps it and
        # ends (at once: the process is gone; bounded all the same): then nothing of
        # the worker is left, not even a zombie.
        watcher = worker.watcher
        if watcher is not None:
            watcher.join(KILL_WAIT)
        with self.lock:
            if worker in self._retiring:
                self._retiring.remove(worker)

    def _drained(self) -> bool:
        with self.lock:
            return (
                not self._heap
                and all(not slot.jobs for slot in self._slots)
                and not self._retiring
            )

    def _jobs_in_flight(self) -> list[RemoteJob]:
        return [job for slot in self._slots for job in slot.jobs]

    def _close_workers(self) -> None:
        """The service thread ends: no worker process may outlive its pool."""
        for slot in self._slots:
            worker = slot.worker
            if worker is None:
                continue
            if slot.jobs:  # only after a failure of the service thread itself
                self._kill(worker, "shutdown")
                with self.lock:
                    slot.jobs.clear()  # their tasks have ended (_service_failed)
            self._retire(slot, worker, restart=False)
        # Normally nothing is left here (the loop ends once every process has exited);
        # after a failure of the service thread, what is left is killed.
        with self.lock:
            leftovers = [worker for worker in self._retiring if worker.process is not None]
            self._retiring.clear()
        for worker in leftovers:
            self._kill(worker, "shutdown")
        deadline = time.monotonic() + KILL_WAIT
        for worker in leftovers:  # each executor's thread reaps its process, then ends
            if worker.watcher is not None:
                worker.watcher.join(max(0.0, deadline - time.monotonic()))

    def _usage_locked(self) -> tuple[int, int, int]:
        busy = [slot for slot in self._slots if slot.jobs]
        workers = sum(1 for slot in self._slots if slot.worker is not None)
        return workers, len(busy), sum(1 for slot in busy if slot.abandoned())

    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (for tests and diagnostics)."""
        with self.lock:
            workers = [slot.worker for slot in self._slots] + self._retiring
            return [
                worker.process.pid
                for worker in workers
                if worker is not None
                and worker.process is not None
                and worker.process.pid is not None
            ]


def exit_description(code: int | None) -> str:
    """How a process ended, from its exit code, for error messages."""
    if code is None:
        return "died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (signal {-code})"
    return f"exited with code {code}"


def close_connection(conn: Connection) -> None:
    """Close a pipe end, ignoring one that is already broken."""
    try:
        conn.close()
    except OSError:
        pass
