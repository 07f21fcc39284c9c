"""What comes back from a process pool's workers: progress, outcomes, crashes, start-up failures.

Runs on the pool's service thread.  Each worker process sends two kinds of things:

* over its pipe, coalesced progress (and, once, :data:`~._processworker.UP_MESSAGE`:
  it is up, so the timeouts of the jobs handed to it start now: ``timeout=`` counts
  the run time, not the start-up of a fresh interpreter);
* through its executor, one pickled outcome per job (:func:`~._processworker.run_call`),
  or ``BrokenProcessPool`` when the process died.

A death is told apart by what the worker wrote in shared memory (``running``):

* it never came up (0): it died starting up.  One that exited by itself (an exception:
  an unguarded entry point, an import error) would fail each time, so its job and the
  queue fail with an error naming the likely cause (:func:`startup_hint`); one killed
  by a signal (from outside) is replaced and its job queued again, up to
  :data:`MAX_START_KILLS` in a row;  one not up after :data:`START_TIMEOUT` is killed
  and fails the same way;
* it ran another job (the next one waiting in its pipe): that job is queued again;
* it ran this job: the job fails with ``WorkerCrashedError`` (or ends cancelled, when
  the pool killed it for a cancel, a timeout or the shutdown).
"""

from __future__ import annotations

import logging
import pickle
import sys
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, cast

from .._errors import SerializationError, WorkerCrashedError, describe_exception
from . import _processworker
from ._pickling import attach_remote_traceback
from ._processslots import ProcessJob, ProcessSlots, Slot, WorkerProcess, close_connection
from ._remote import apply_progress
from ._remotejob import RemoteJob

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .._config import PoolConfig
    from ._map import MapHandle
    from ._remotejob import MapState

__all__ = ("MAX_START_KILLS", "START_TIMEOUT", "ProcessResults", "startup_hint")

logger = logging.getLogger("casare_workers")

#: Seconds a new worker process may take to start up (a fresh interpreter importing the
#: application's main module and casare_workers: 0.3-1 s, more on a loaded machine)
#: before it is killed and its task fails: a start-up that never ends (an unguarded
#: entry point that runs an event loop in every worker) must not hold a task for ever.
START_TIMEOUT = 60.0
#: Worker processes in a row that may die by a signal while starting up (killed from
#: outside, e.g. by the OS short of memory; or a crash in native code at import) before
#: the pool gives up and fails its queue; until then each is replaced and its task
#: queued again.  A start-up that fails by itself (an exception, exit code 1: an
#: unguarded entry point, an import error) is given up at once: it would fail each time.
MAX_START_KILLS = 10


class ProcessResults(ProcessSlots):
    """A process pool's second layer: it reads what its worker processes send back."""

    def __init__(self, name: str, max_workers: int, config: PoolConfig) -> None:
        super().__init__(name, max_workers, config)
        # Outcomes handed over by the executors' threads, for the service thread.
        self._completions: deque[tuple[Slot, ProcessJob, Future[bytes]]] = deque()
        self._start_kills = 0  # workers killed while starting up since one came up

    # -- progress, and the worker saying it is up --------------------------------------------

    def _read_progress(self, slot: Slot) -> None:
        worker = slot.worker
        assert worker is not None
        conn = worker.conn
        assert conn is not None
        try:
            while conn.poll(0):
                task_id, chunk, progress, status = conn.recv()
                if task_id == 0:  # _processworker.UP_MESSAGE: set up, ready to run
                    self._worker_up(slot, worker)
                    continue
                for job in slot.jobs:
                    if job.task.id != task_id or (job.map is not None and job.start != chunk):
                        continue
                    if job.map is None:
                        apply_progress(job.task, progress, status)
                    else:
                        job.partial = progress[0] if progress is not None else 0
                        self._map_progress(cast("MapHandle[Any]", job.task), job.map)
                    break
        except Exception:
            # The process died mid-message (its executor reports the crash) or sent
            # garbage: stop listening to it.
            close_connection(conn)
            worker.conn = None

    def _worker_up(self, slot: Slot, worker: WorkerProcess) -> None:
        """A worker process has started: the timeouts of the jobs handed to it begin now.

        So ``timeout=`` counts the function's run time, as documented, not the start-up
        of a fresh interpreter (which a cold pool pays before its first task).
        """
        worker.ready = True
        self._start_kills = 0
        for job in list(slot.jobs):
            if job.watch_pending and job.worker is worker:
                job.watch_pending = False
                job.task.watch_timeout()

    def _map_progress(self, task: MapHandle[Any], state: MapState) -> None:
        # Chunks stored, plus what the chunks still running said they have done.
        total = task.total
        running = sum(job.partial for slot in self._slots for job in slot.jobs if job.map is state)
        apply_progress(task, (min(state.done + running, total), total), None)

    # -- outcomes ------------------------------------------------------------------------------

    def _completed(self, slot: Slot, job: ProcessJob, future: Future[bytes]) -> None:
        # Runs on the executor's management thread: hand over, no work here.
        self._completions.append((slot, job, future))
        self._wake()

    def _jobs_in_flight(self) -> list[RemoteJob]:
        return super()._jobs_in_flight() + [job for _, job, _ in self._completions]

    def _handle_completions(self) -> None:
        while self._completions:
            slot, job, future = self._completions.popleft()
            with self.lock:
                if job in slot.jobs:
                    slot.jobs.remove(job)
                if not slot.jobs:
                    slot.idle_since = time.monotonic()
                if not slot.abandoned():
                    slot.kill_at = None
            if future.cancelled():  # only when the executor itself was shut down
                job.task.cancel(reason="shutdown")
                continue
            exc = future.exception()
            worker = job.worker
            if isinstance(exc, BrokenProcessPool) and worker is not None:
                self._crashed(slot, job, worker, exc)
            elif exc is not None:  # our call could not even be sent
                job.task.fail(exc)
            else:
                self._finish(job, future.result())

    def _crashed(
        self, slot: Slot, job: ProcessJob, worker: WorkerProcess, exc: BaseException
    ) -> None:
        how = self._retire_crashed(slot, worker)
        never_up = worker.running.value == 0
        if never_up and (not worker.killed or worker.kill_reason == "startup"):
            if self._give_up_starting(worker):
                self._startup_failed(job, how, exc, worker)
            else:  # killed from outside while starting: its job never ran
                self._requeue(job)
        elif worker.running.value != job.seq:
            # Handed to the process but never started: put it back, in its place.
            self._requeue(job)
        elif worker.killed:
            job.task.cancel(reason=worker.kill_reason)  # no-op unless shutdown killed it
        else:
            job.task.fail(self._crash_error(job, how, exc))

    def _requeue(self, job: ProcessJob) -> None:
        if job.task.done():
            return
        job.worker = None
        job.signalled = False
        with self.lock:
            self._push_locked(job)

    def _crash_error(self, job: ProcessJob, how: str, cause: BaseException) -> BaseException:
        error = WorkerCrashedError(
            f"the worker process {how} while running {job.describe()}; pool {self.name!r} "
            "replaced it and its other tasks go on.  (A crash in native code, os._exit() in "
            "the task, or the OS killing the process, e.g. for lack of memory, all end "
            "like this; if every task ends like this, the worker cannot start: look for "
            "its traceback on stderr.)"
        )
        error.__cause__ = cause
        return error

    def _finish(self, job: ProcessJob, data: bytes) -> None:
        if data == _processworker.SKIPPED:
            return  # the worker saw the task cancelled; it has ended already
        try:
            ok, value, text, progress, status = pickle.loads(data)
        except BaseException as exc:
            # Unpickling runs the classes' own code, which may raise anything (SystemExit
            # included): it ends this task, never the service thread that runs all.
            error = SerializationError(
                f"the outcome of {job.describe()} could not be unpickled in the GUI process "
                f"({describe_exception(exc)}); return plain data whose classes are "
                "importable here"
            )
            error.__cause__ = exc
            job.task.fail(error)
            return
        if not ok:
            job.task.fail(attach_remote_traceback(value, text))
            return
        self._finish_job(job, value, progress, status)

    # -- start-up ------------------------------------------------------------------------------

    def _startup_deadline(self, worker: WorkerProcess) -> float:
        """When a worker that has not come up is killed (``time.monotonic()``)."""
        return worker.started_at + START_TIMEOUT

    def _give_up_starting(self, worker: WorkerProcess) -> bool:
        """Decide (once per worker) whether its death while starting up fails the queue."""
        if worker.failed_start is None:
            process = worker.process
            code = process.exitcode if process is not None else None
            self._start_kills += 1
            worker.failed_start = (
                worker.killed  # it hung: START_TIMEOUT
                or (code is not None and code >= 0)  # it failed by itself
                or self._start_kills >= MAX_START_KILLS
            )
        return worker.failed_start

    def _startup_failed(
        self, job: ProcessJob, how: str, cause: BaseException | None, worker: WorkerProcess
    ) -> None:
        """A worker process died (or hung) starting up: fail its job and the queue.

        Respawning would fail the same way (an unguarded entry point fails in every
        worker), for ever: the job it was started for ends with an error saying why,
        so does every job still queued, and the next submit tries again.
        """
        error = WorkerCrashedError(
            f"the worker process {how} while starting up, before it could run "
            f"{job.describe()}: pool {self.name!r} could not start a worker process.  "
            f"{startup_hint(worker)}  Tasks queued on the pool end with this error "
            "too; the next submit tries again."
        )
        error.__cause__ = cause
        with self.lock:
            queued = [queued_job for _, _, queued_job in self._heap]
            self._heap.clear()
        logger.error("pool %r: %s", self.name, error)
        for failed in (job, *queued):
            failed.task.fail(error)


def startup_hint(worker: WorkerProcess) -> str:
    """Why a worker process could not start, as far as this process can tell."""
    guard = 'if __name__ == "__main__":'
    process = worker.process
    code = process.exitcode if process is not None else None
    if not worker.killed and code is not None and code < 0:
        return (
            f"{MAX_START_KILLS} worker processes in a row died by a signal like this "
            "while starting up: killed from outside (the OS may be short of memory: see "
            "PoolConfig.memory_per_worker), or a crash in native code imported at start-up."
        )
    if worker.killed:
        return (
            f"It had not started after {START_TIMEOUT:g} s.  The usual cause is an "
            f"application entry point without an  {guard}  guard: every worker process "
            "imports the main module, and its unguarded code (an event loop, app.exec()) "
            "runs again there and never returns."
        )
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path:
        try:
            with open(path, encoding="utf-8", errors="replace") as main:
                guarded = "__main__" in main.read()
        except OSError:
            guarded = True  # unknown: say what is likely, not what is certain
        if not guarded:
            return (
                f"The main module {path} has no  {guard}  guard: every worker process "
                "imports it, and its unguarded code (creating the application, submitting "
                "work) runs again there and fails.  Put the application's start-up under "
                "that guard."
            )
    return (
        f"The usual cause is an application entry point without an  {guard}  guard "
        "(every worker process imports the main module, and its unguarded code runs "
        "again there); the worker's traceback is on stderr."
    )
