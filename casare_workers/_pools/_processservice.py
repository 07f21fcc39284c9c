"""A process pool's service thread: waking it, shipping jobs, its clocks, and the exit hook.

One thread per pool, started by the first task, runs the remote outline
(``_remote.RemotePool._serve``).  It sleeps in ``multiprocessing.connection.wait`` on
its wake-up pipe, the workers' progress pipes and the sentinels of retiring processes,
until the nearest deadline:

* a job whose task ended here (cancel, timeout, owner destroyed) is told so: its task
  id over the worker's pipe (a job not started yet skips itself, ``ctx.wait`` wakes),
  and the shared flag (``ctx.cancelled``) for the one running; ``cancel_grace`` later
  the process is killed if it still runs it, and the slot starts a new one;
* a worker not up after ``START_TIMEOUT`` is killed (its job fails: see
  ``_processresults``);
* a worker idle for ``idle_timeout`` is retired; a retired one still alive
  ``RETIRE_WAIT`` later is killed, with a warning.

At interpreter exit, :func:`register_exit_hook`'s hook stops every live pool first, so
``concurrent.futures``' own exit hook does not wait for a stuck worker for ever.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from .._errors import WorkerCrashedError
from . import _processworker
from ._processresults import ProcessResults
from ._processslots import (
    KILL_WAIT,
    RETIRE_WAIT,
    SPAWN,
    ProcessJob,
    Slot,
    WorkerProcess,
    close_connection,
)

if TYPE_CHECKING:
    from .._config import PoolConfig
    from ._remotejob import RemoteJob

__all__ = ("ProcessService", "register_exit_hook")

logger = logging.getLogger("casare_workers")


class ProcessService(ProcessResults):
    """A process pool's third layer: the service thread that drives the slots."""

    watch_at_begin = False  # a job's timeout starts once its worker process is up
    service_error_class = WorkerCrashedError

    def __init__(self, name: str, max_workers: int, config: PoolConfig) -> None:
        super().__init__(name, max_workers, config)
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        self._wake_lock = threading.Lock()
        self._wake_pending = False

    # -- waking ------------------------------------------------------------------------------

    def _queued_locked(self) -> None:
        # The first task starts the service thread (nothing runs before: no thread, no
        # process).
        if self._service is not None:
            return
        register_exit_hook(self)
        self._wake_r, self._wake_w = SPAWN.Pipe(duplex=False)
        self._service = threading.Thread(
            target=self._serve, name=f"casare-{self.name}-service", daemon=True
        )
        self._service.start()

    def _wake(self) -> None:
        """Wake the service thread (any thread); at most one wake-up in flight.

        Callers queue their work first, then wake: see ``_wait_for_work`` for the order
        that makes a lost wake-up impossible.
        """
        if self._wake_pending:
            return
        with self._wake_lock:
            writer = self._wake_w
            if self._wake_pending or writer is None:
                return
            self._wake_pending = True
            try:
                writer.send_bytes(b"")
            except (OSError, ValueError):  # closed: the service thread has ended
                pass

    def _wait_for_work(self) -> None:
        wake_r = self._wake_r
        assert wake_r is not None
        by_conn = {
            slot.worker.conn: slot
            for slot in self._slots
            if slot.worker is not None and slot.worker.conn is not None
        }
        # A retiring worker's process sentinel turns ready when it has exited.
        exiting = {
            worker.process.sentinel: worker
            for worker in self._retiring_now()
            if worker.process is not None
        }
        ready = wait([wake_r, *by_conn, *exiting], self._next_deadline())
        for conn in ready:
            if conn is wake_r:
                # Drain first, then clear: a wake-up sent in between would be drained
                # with the flag still set, and no later one would be sent.  In this
                # order a waker either sees the flag set (its work, queued before, is
                # handled after this) or sends a new byte.
                _drain(wake_r)
                self._wake_pending = False
            elif isinstance(conn, int):
                self._exited(exiting[conn])
            else:
                self._read_progress(by_conn[conn])  # type: ignore[index]

    def _next_deadline(self) -> float | None:
        now = time.monotonic()
        deadlines = [slot.kill_at for slot in self._slots if slot.kill_at is not None]
        deadlines += [
            slot.idle_since + self._idle_timeout
            for slot in self._slots
            if slot.worker is not None and not slot.jobs
        ]
        deadlines += [worker.retire_by for worker in self._retiring_now() if not worker.killed]
        deadlines += [
            self._startup_deadline(worker)
            for slot in self._slots
            if (worker := slot.worker) is not None
            and slot.jobs
            and not worker.ready
            and not worker.killed
        ]
        return max(0.0, min(deadlines) - now) if deadlines else None

    # -- shipping a job ----------------------------------------------------------------------

    def _job_started(self, job: RemoteJob) -> None:
        assert isinstance(job, ProcessJob)
        job.watch_pending = job.task.timeout is not None

    def _send(self, place: Any, job: RemoteJob) -> None:
        assert isinstance(place, Slot)
        assert isinstance(job, ProcessJob)
        slot = place
        task = job.task
        for attempt in (1, 2):
            worker = slot.worker
            if worker is None:
                try:
                    worker = self._open(slot)
                except Exception as exc:
                    task.fail(exc)
                    return
            job.seq = next(self._order)
            try:
                if job.map is None:
                    future = worker.executor.submit(
                        _processworker.run_call,
                        job.seq,
                        task.id,
                        task.name,
                        task.call.mode,
                        job.payload,
                    )
                else:
                    future = worker.executor.submit(
                        _processworker.run_chunk,
                        job.seq,
                        task.id,
                        task.name,
                        job.start,
                        job.map.fn_payload,
                        job.payload,
                    )
            except BrokenProcessPool:
                # The process died since its last job: replace it and try again.
                self._retire(slot, worker, restart=True)
                if attempt == 2:
                    task.fail(WorkerCrashedError("could not start a worker process"))
                    return
                continue
            except Exception as exc:  # e.g. the OS refused a new process
                self._retire(slot, worker, restart=False)
                task.fail(exc)
                return
            break
        assert worker is not None
        if worker.process is None:
            processes = getattr(worker.executor, "_processes", None) or {}
            worker.process = next(iter(processes.values()), None)
        job.worker = worker
        with self.lock:
            slot.jobs.append(job)
        if job.watch_pending and worker.ready:
            job.watch_pending = False
            task.watch_timeout()
        future.add_done_callback(lambda f: self._completed(slot, job, f))

    # -- tasks that ended here, and the clocks -------------------------------------------------

    def _signal_ended(self) -> None:
        """Tell workers about jobs whose task ended here (cancel, timeout, owner gone).

        Every such job is sent its task id over the pipe (a job that has not started
        yet skips itself; ``ctx.wait`` wakes up); the one a process is running also
        gets the shared flag (``ctx.cancelled``), and ``cancel_grace`` to return.
        """
        now = time.monotonic()
        for slot in self._slots:
            worker = slot.worker
            if worker is None:
                continue
            for job in slot.abandoned():
                if worker.running.value == job.seq:
                    worker.flag.value = job.task.id
                if job.signalled:
                    continue
                job.signalled = True
                if slot.kill_at is None:
                    slot.kill_at = now + self.cancel_grace
                conn = worker.conn
                if conn is not None:
                    try:
                        conn.send_bytes(str(job.task.id).encode())
                    except (OSError, ValueError):
                        pass

    def _handle_deadlines(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            worker = slot.worker
            if slot.jobs and worker is not None:
                self._busy_deadlines(slot, worker, now)
            elif (
                worker is not None
                and not slot.jobs
                and (
                    slot.idle_since + self._idle_timeout <= now
                    or (self._stopping and not self._heap)
                )
            ):
                self._retire(slot, worker, restart=False)  # idle too long: free the memory
        for worker in self._retiring_now():
            if not worker.killed and (self._hurry or worker.retire_by <= now):
                process = worker.process
                logger.warning(
                    "pool %r: worker process (pid %s) had not exited %s; killed it (a "
                    "task probably left a non-daemon thread running in it: start such "
                    "threads with daemon=True, or join them before returning)",
                    self.name,
                    process.pid if process is not None else "?",
                    "when the shutdown's time ran out"
                    if self._hurry
                    else f"{RETIRE_WAIT:g} s after it was told to",
                )
                self._kill(worker, "retired")

    def _busy_deadlines(self, slot: Slot, worker: WorkerProcess, now: float) -> None:
        if self._abort:
            self._kill(worker, "shutdown")
        elif (
            worker.running.value == 0
            and not worker.killed
            and self._startup_deadline(worker) <= now
        ):
            self._kill(worker, "startup")  # it never came up: see _startup_failed
        elif slot.kill_at is not None and slot.kill_at <= now:
            running = worker.running.value
            if any(job.seq == running for job in slot.abandoned()):
                slot.kill_at = None
                self._kill(worker, "cancelled")
            elif slot.abandoned():  # still waiting behind a live job: look again
                slot.kill_at = now + self.cancel_grace
            else:
                slot.kill_at = None

    # -- stopping ------------------------------------------------------------------------------

    def emergency_stop(self, reason: str, *, hurry: bool = True) -> None:
        """Kill every busy worker and drop the queue (any thread).

        With ``hurry``, retiring workers that have not exited yet are killed too;
        without, they keep the rest of their :data:`RETIRE_WAIT`.
        """
        with self.lock:
            self._accepting = False
            self._stopping = True
            self._abort = True
            self._hurry = self._hurry or hurry
            busy = [slot.worker for slot in self._slots if slot.jobs]
        for worker in busy:
            if worker is not None:
                self._kill(worker, reason)
        self._wake()

    def _close_everything(self) -> None:
        self._close_workers()
        with self._wake_lock:
            for conn in (self._wake_r, self._wake_w):
                if conn is not None:
                    close_connection(conn)
            self._wake_w = None


def _drain(conn: Connection) -> None:
    try:
        while conn.poll(0):
            conn.recv_bytes()
    except (EOFError, OSError):
        pass


# -- at interpreter exit --------------------------------------------------------------------

# concurrent.futures joins every executor's management thread at exit, and that thread
# waits for the call its process is running, then for the process to exit: one stuck
# task, or one non-daemon thread a task left running, would hang the exit forever if
# the application never shut its manager down.  This hook runs first (hooks run in
# reverse order of registration, and concurrent.futures registered at import): it kills
# the busy workers of every live pool, tells the idle ones to exit, and waits for each
# pool's service thread, which kills a worker that has not exited within RETIRE_WAIT.
# So the joins that follow return at once, and the exit waits RETIRE_WAIT at most.
_live_pools: weakref.WeakSet[ProcessService] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_registered = False


def register_exit_hook(pool: ProcessService) -> None:
    """Stop ``pool`` before ``concurrent.futures`` joins its executors at exit."""
    global _hook_registered
    _live_pools.add(pool)
    with _hook_lock:
        if _hook_registered:
            return
        register = getattr(threading, "_register_atexit", None)
        if register is None:  # pragma: no cover - every supported CPython has it
            return
        try:
            register(_kill_all_workers)
        except RuntimeError:  # the interpreter is already shutting down
            return
        _hook_registered = True


def _kill_all_workers() -> None:
    pools = list(_live_pools)
    for pool in pools:
        pool.emergency_stop("shutdown", hurry=False)
    deadline = time.monotonic() + RETIRE_WAIT + KILL_WAIT
    for pool in pools:
        pool.join_service(deadline)
