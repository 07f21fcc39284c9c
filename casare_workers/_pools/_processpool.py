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

Why one ``ProcessPoolExecutor`` per slot, each with one process: when any process of a
``ProcessPoolExecutor`` dies, the executor marks itself broken, fails *every* pending
future and terminates its other processes (CPython does this on purpose: its queues
may be corrupt).  With one process per executor, a crash fails exactly the one call
that process was running; the other slots never notice, and queued work stays in our
own queue (with priorities, and cancellable while queued) instead of the executor's.
A worker holds one task, or two chunks of the same ``map`` (:data:`PIPELINE`); it
marks in shared memory which one it runs, so a crash fails that one and the other
goes back to the queue: nothing in flight is lost or blamed wrongly.

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
worker says when it is up (``running`` turns :data:`~._processworker.UP`, and a
message), so such a death is told apart from a crash: it fails the task and the
queue with an error naming the missing guard instead of respawning for ever (see
``_startup_failed``).  Being up is also when a task's timeout starts: it counts the
run time, not the start-up.

Cancelling a running task ends it at once as cancelled (as on threads); its process
sees ``ctx.cancelled`` (and ``ctx.wait`` returns early) and is given ``cancel_grace``
seconds to return; after that the process is killed and the slot starts a new one for
its next job.  Timeouts do the same.  Other slots are never affected.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import logging
import math
import multiprocessing
import pickle
import signal
import sys
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, cast

from .._config import PoolConfig
from .._core._state import TaskState
from .._errors import (
    ManagerShutdownError,
    SerializationError,
    WorkerCrashedError,
    describe_exception,
)
from . import _processworker
from ._pool import TaskCounters
from ._remote import (
    apply_progress,
    attach_remote_traceback,
    dump_items,
    dumps_checked,
    start_task,
)
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from .._core._handle import TaskHandle
    from ._map import MapHandle

__all__ = ("CHUNKS_PER_WORKER", "PIPELINE", "ProcessPool", "available_memory", "size_for_memory")

logger = logging.getLogger("casare_workers")

_QUEUED, _RUNNING = TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _FAILED = TaskState.SUCCEEDED, TaskState.FAILED

#: A ``map`` is cut into about this many chunks per worker process when no chunksize
#: is given: few enough that pickling and the round trip are paid a handful of times,
#: enough that the workers finish together (the classic ``multiprocessing.Pool`` rule).
CHUNKS_PER_WORKER = 4
#: Jobs handed to one worker process at once: the one it runs, and (chunks of the
#: same ``map`` only) the next one, waiting in its pipe.  The worker goes from one to
#: the next without waiting for this process; a crash fails only the one it was
#: running (it says which, in shared memory), the other one is put back in the queue.
PIPELINE = 2
#: Seconds ``join`` waits for killed processes after its deadline.
KILL_WAIT = 5.0
#: Seconds a retired worker process (idle too long, replaced, or its pool shutting down)
#: has to exit once told to.  One that does not, usually because a task left a
#: non-daemon thread running in it, is killed: it must not hold its pool's service
#: thread, the pool's shutdown or the interpreter's exit.
RETIRE_WAIT = 2.0
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

_SPAWN = multiprocessing.get_context("spawn")


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
    """Apply the seed note's memory rule: ``available / (per_worker * 1.5)``, at least 1."""
    if per_worker is None or available is None:
        return max_workers
    return max(1, min(max_workers, int(available // (per_worker * 1.5))))


class _MapState:
    """The shared state of one ``map`` spread over several chunk jobs."""

    __slots__ = ("done", "fn_payload", "running", "started")

    def __init__(self, fn_payload: bytes) -> None:
        self.fn_payload = fn_payload
        self.done = 0
        self.started = False
        self.running: set[_Job] = set()


class _Worker:
    """One worker process: its single-process executor and what it shares with us."""

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


class _Job:
    """One call to ship to a worker: a whole task, or one chunk of a ``map``."""

    __slots__ = (
        "begun",
        "count",
        "map",
        "order",
        "partial",
        "payload",
        "priority",
        "seq",
        "signalled",
        "start",
        "task",
        "watch_pending",
        "worker",
    )

    def __init__(
        self,
        task: TaskHandle[Any],
        payload: bytes,
        priority: int,
        order: int,
        map_state: _MapState | None = None,
        start: int = 0,
        count: int = 0,
    ) -> None:
        self.task = task
        self.payload = payload
        self.priority = priority
        self.order = order  # its place in the queue, kept if it is put back
        self.map = map_state
        self.start = start
        self.count = count
        self.partial = 0
        self.seq = 0
        self.begun = False
        self.signalled = False
        self.watch_pending = False  # its timeout starts once its worker is up
        self.worker: _Worker | None = None

    def describe(self) -> str:
        if self.map is None:
            return f"task {self.task.name!r}"
        last = self.start + self.count - 1
        return f"items {self.start}-{last} of map({self.task.name})"


class _Slot:
    """A place for one worker process and the (at most PIPELINE) jobs handed to it.

    Owned by the service thread; the fields read by ``statistics`` from other threads
    are written with the pool's lock held.
    """

    __slots__ = ("idle_since", "jobs", "kill_at", "worker")

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.jobs: list[_Job] = []
        self.kill_at: float | None = None
        self.idle_since = 0.0

    def abandoned(self) -> list[_Job]:
        return [job for job in self.jobs if job.task.done()]


class ProcessPool(TaskCounters):
    """Worker processes behind a manager pool of ``kind="process"`` (the ``"cpu"`` pool).

    Internal: users reach it through ``WorkerManager``.  Thread-safe.  Nothing is
    started until the first task: no thread, no process.
    """

    kind = "process"

    def __init__(self, name: str, config: PoolConfig) -> None:
        self.name = name
        available = available_memory() if config.memory_per_worker is not None else None
        self.max_workers = size_for_memory(config.max_workers, config.memory_per_worker, available)
        if self.max_workers < config.max_workers:
            logger.info(
                "pool %r: %d worker processes instead of %d (%.0f MiB available, %.0f MiB "
                "per worker x 1.5)",
                name,
                self.max_workers,
                config.max_workers,
                (available or 0) / 2**20,
                (config.memory_per_worker or 0) / 2**20,
            )
        self._idle_timeout = config.idle_timeout
        self.cancel_grace = config.cancel_grace
        self.lock = threading.Lock()
        self._heap: list[tuple[int, int, _Job]] = []
        self._seq = itertools.count()
        self._slots = [_Slot() for _ in range(self.max_workers)]
        self._completions: deque[tuple[_Slot, _Job, Future[bytes]]] = deque()
        # Workers told to exit whose process has not ended yet (guarded by the lock).
        self._retiring: list[_Worker] = []
        self._service: threading.Thread | None = None
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._accepting = True
        self._stopping = False
        self._abort = False
        self._hurry = False  # kill retiring workers now (the shutdown's time is up)
        self._failure: BaseException | None = None  # what stopped the service thread
        self._restarts = 0
        self._start_kills = 0  # workers killed while starting up since one came up

    @property
    def timeout_fate(self) -> str:
        """What happens to a timed-out task's process (completes ``TaskTimeoutError``)."""
        return (
            "its worker process sees ctx.cancelled and is killed and replaced if it has "
            f"not returned within the pool's cancel_grace of {self.cancel_grace} s"
        )

    # -- submitting (any thread) ---------------------------------------------------------

    def submit(self, task: TaskHandle[Any], priority: int) -> None:
        """Pickle the call now (refusing what cannot travel), then queue it."""
        self._check_accepting()
        payload = dumps_checked(task.name, *task.call[:3])
        with self.lock:
            self._register(task)
            self._push(_Job(task, payload, priority, next(self._seq)))
            self._ensure_service()
        self._wake()

    def submit_map(self, task: MapHandle[Any], priority: int) -> None:
        """Cut the items into chunks, pickle each now, and queue them as one task."""
        self._check_accepting()
        items = task.items
        n = len(items)
        size = task.fixed_chunksize or max(
            1, math.ceil(n / (self.max_workers * CHUNKS_PER_WORKER))
        )
        state = _MapState(dumps_checked(f"map({task.name})", task.call.fn, (), {}))
        name = task.name
        jobs = [
            _Job(task, dump_items(name, items, start, size), priority, 0, state, start, count)
            for start in range(0, n, size)
            if (count := min(size, n - start))
        ]
        with self.lock:
            self._register(task)
            task.set_chunks(len(jobs))
            for job in jobs:
                job.order = next(self._seq)
                self._push(job)
            if jobs:
                self._ensure_service()
        if not jobs:
            task.finish()
            return
        self._wake()

    def _push(self, job: _Job) -> None:
        # Called with the lock held.
        heapq.heappush(self._heap, (-job.priority, job.order, job))

    def _check_accepting(self) -> None:
        if not self._accepting:
            failure = self._failure
            if failure is not None:
                raise ManagerShutdownError(
                    f"pool {self.name!r} stopped working after an internal error "
                    f"({describe_exception(failure)}; the log has the traceback); create a "
                    "new WorkerManager to run more work"
                ) from failure
            raise ManagerShutdownError(
                f"pool {self.name!r} is shut down; create a new WorkerManager to run more work"
            )

    def _register(self, task: TaskHandle[Any]) -> None:
        # Called with the lock held.
        self._check_accepting()
        task.mark_queued()
        self.count_submitted()

    def _ensure_service(self) -> None:
        # Called with the lock held: the first task starts the service thread.
        if self._service is not None:
            return
        _register_exit_hook(self)
        self._wake_r, self._wake_w = _SPAWN.Pipe(duplex=False)
        self._service = threading.Thread(
            target=self._serve, name=f"casare-{self.name}-service", daemon=True
        )
        self._service.start()

    def _wake(self) -> None:
        """Wake the service thread (any thread); at most one wake-up in flight.

        Callers queue their work first, then wake: see ``_serve`` for the order that
        makes a lost wake-up impossible.
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

    # -- the protocol's accounting (called with the lock held) ------------------------------

    def on_cancel(self, task: TaskHandle[Any], was_running: bool) -> None:
        """Nothing here: the done callback set at dispatch covers cancels and timeouts."""

    # -- the service thread -------------------------------------------------------------

    def _serve(self) -> None:
        wake_r = self._wake_r
        assert wake_r is not None
        try:
            while True:
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
                        # Drain first, then clear: a wake-up sent in between would be
                        # drained with the flag still set, and no later one would be
                        # sent.  In this order a waker either sees the flag set (its
                        # work, queued before, is handled below) or sends a new byte.
                        _drain(wake_r)
                        self._wake_pending = False
                    elif isinstance(conn, int):
                        self._exited(exiting[conn])
                    else:
                        self._read_progress(by_conn[conn])  # type: ignore[index]
                self._handle_completions()
                self._signal_ended()
                self._handle_deadlines()
                self._dispatch()
                if self._stopping and self._drained():
                    return
        except BaseException as exc:  # a bug of ours: say so loudly (once), end every task
            logger.exception("pool %r: the service thread failed", self.name)
            self._fail_everything(exc)
        finally:
            self._close_everything()

    def _fail_everything(self, exc: BaseException) -> None:
        """The service thread is failing: no task may wait for it for ever."""
        with self.lock:
            self._accepting = False
            self._failure = exc
            jobs = [job for _, _, job in self._heap]
            self._heap.clear()
            jobs += [job for slot in self._slots for job in slot.jobs]
        jobs += [job for _, job, _ in self._completions]
        error = WorkerCrashedError(
            f"pool {self.name!r} stopped working: its service thread failed "
            f"({describe_exception(exc)}; the log has the traceback); create a new "
            "WorkerManager to run more work"
        )
        error.__cause__ = exc
        for job in jobs:
            job.task.fail(error)

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
            worker.started_at + START_TIMEOUT
            for slot in self._slots
            if (worker := slot.worker) is not None
            and slot.jobs
            and not worker.ready
            and not worker.killed
        ]
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _retiring_now(self) -> list[_Worker]:
        with self.lock:
            return list(self._retiring)

    def _exited(self, worker: _Worker) -> None:
        # The process of a retired worker has ended.  Its executor's thread reaps it and
        # ends (at once: the process is gone; bounded all the same): then nothing of
        # the worker is left, not even a zombie.
        watcher = worker.watcher
        if watcher is not None:
            watcher.join(KILL_WAIT)
        with self.lock:
            if worker in self._retiring:
                self._retiring.remove(worker)

    def _read_progress(self, slot: _Slot) -> None:
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
            _close(conn)
            worker.conn = None

    def _worker_up(self, slot: _Slot, worker: _Worker) -> None:
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

    def _map_progress(self, task: MapHandle[Any], state: _MapState) -> None:
        total = task.total
        done = state.done + sum(job.partial for job in state.running)
        apply_progress(task, (min(done, total), total), None)

    def _completed(self, slot: _Slot, job: _Job, future: Future[bytes]) -> None:
        # Runs on the executor's management thread: hand over, no work here.
        self._completions.append((slot, job, future))
        self._wake()

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
            if job.map is not None:
                job.map.running.discard(job)
            if future.cancelled():  # only when the executor itself was shut down
                job.task.cancel(reason="shutdown")
                continue
            exc = future.exception()
            worker = job.worker
            if isinstance(exc, BrokenProcessPool) and worker is not None:
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
                    self._fail(job, self._crash_error(job, how, exc))
            elif exc is not None:  # our call could not even be sent
                self._fail(job, exc)
            else:
                self._finish(job, future.result())

    def _requeue(self, job: _Job) -> None:
        if job.task.done():
            return
        job.worker = None
        job.signalled = False
        with self.lock:
            self._push(job)

    def _give_up_starting(self, worker: _Worker) -> bool:
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
        self, job: _Job, how: str, cause: BaseException | None, worker: _Worker
    ) -> None:
        """A worker process died (or hung) starting up: fail its job and the queue.

        Respawning would fail the same way (an unguarded entry point fails in every
        worker), for ever: the job it was started for ends with an error saying why,
        so does every job still queued, and the next submit tries again.
        """
        error = WorkerCrashedError(
            f"the worker process {how} while starting up, before it could run "
            f"{job.describe()}: pool {self.name!r} could not start a worker process.  "
            f"{_startup_hint(worker)}  Tasks queued on the pool end with this error "
            "too; the next submit tries again."
        )
        error.__cause__ = cause
        with self.lock:
            queued = [queued_job for _, _, queued_job in self._heap]
            self._heap.clear()
        logger.error("pool %r: %s", self.name, error)
        for failed in (job, *queued):
            self._fail(failed, error)

    def _crash_error(self, job: _Job, how: str, cause: BaseException | None) -> BaseException:
        error = WorkerCrashedError(
            f"the worker process {how} while running {job.describe()}; pool {self.name!r} "
            "replaced it and its other tasks go on.  (A crash in native code, os._exit() in "
            "the task, or the OS killing the process, e.g. for lack of memory, all end "
            "like this; if every task ends like this, the worker cannot start: look for "
            "its traceback on stderr.)"
        )
        error.__cause__ = cause
        return error

    def _finish(self, job: _Job, data: bytes) -> None:
        task = job.task
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
            self._fail(job, error)
            return
        if not ok:
            self._fail(job, attach_remote_traceback(value, text))
            return
        state = job.map
        if state is None:
            apply_progress(task, progress, status)  # the final values precede the result
            task.succeed(value)
            return
        mapped = cast("MapHandle[Any]", task)
        mapped.store_results(job.start, value)
        state.done += job.count
        if state.done >= mapped.total:
            mapped.finish()
        else:
            self._map_progress(mapped, state)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        job.task.fail(exc)

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
                if self._abort:
                    self._kill(worker, "shutdown")
                elif (
                    worker.running.value == 0
                    and not worker.killed
                    and worker.started_at + START_TIMEOUT <= now
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

    def _kill(self, worker: _Worker, reason: str) -> None:
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

    def _pick_slot(self, job: _Job) -> _Slot | None:
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

    def _dispatch(self) -> None:
        with self.lock:
            if self._abort:
                dropped = [job for _, _, job in self._heap]
                self._heap.clear()
            else:
                dropped = []
        for job in dropped:  # shutting down with no time left: what is queued ends now
            job.task.cancel(reason="shutdown")
        while True:
            with self.lock:
                if not self._heap:
                    return
                slot = self._pick_slot(self._heap[0][2])
                if slot is None:
                    return
                job = heapq.heappop(self._heap)[2]
            if self._start(job):
                self._run_on(slot, job)

    def _start(self, job: _Job) -> bool:
        task = job.task
        state = job.map
        if job.begun or (state is not None and state.started):
            job.begun = True
            return not task.done()
        if not start_task(task, self, watch=False):
            return False
        job.begun = True
        job.watch_pending = task.timeout is not None
        if state is not None:
            state.started = True
        task.when_done(self._task_done)
        return True

    def _task_done(self, task: TaskHandle[Any]) -> None:
        # Runs on whichever thread ended the task.  Only an ending decided elsewhere
        # (cancel, timeout, owner destroyed) needs the service thread's attention.
        if threading.current_thread() is not self._service:
            self._wake()

    def _run_on(self, slot: _Slot, job: _Job) -> None:
        task = job.task
        for attempt in (1, 2):
            worker = slot.worker
            if worker is None:
                try:
                    worker = self._open(slot)
                except Exception as exc:
                    self._fail(job, exc)
                    return
            job.seq = next(self._seq)
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
                    self._fail(job, WorkerCrashedError("could not start a worker process"))
                    return
                continue
            except Exception as exc:  # e.g. the OS refused a new process
                self._retire(slot, worker, restart=False)
                self._fail(job, exc)
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
        if job.map is not None:
            job.map.running.add(job)
        future.add_done_callback(lambda f: self._completed(slot, job, f))

    def _open(self, slot: _Slot) -> _Worker:
        parent, child = _SPAWN.Pipe(duplex=True)
        flag = _SPAWN.RawValue("q", 0)
        running = _SPAWN.RawValue("q", 0)
        executor = ProcessPoolExecutor(
            1,
            mp_context=_SPAWN,
            initializer=_processworker.initialize,
            initargs=(child, flag, running),
        )
        worker = _Worker(executor, parent, child, flag, running)
        with self.lock:
            slot.worker = worker
            slot.idle_since = time.monotonic()
        return worker

    def _retire(self, slot: _Slot, worker: _Worker, *, restart: bool) -> None:
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
                _close(conn)
        worker.conn = worker.child_conn = None
        watcher = getattr(worker.executor, "_executor_manager_thread", None)
        worker.watcher = watcher if isinstance(watcher, threading.Thread) else None
        worker.executor.shutdown(wait=False, cancel_futures=True)

    def _retire_crashed(self, slot: _Slot, worker: _Worker) -> str:
        """Retire a worker whose process died; return how it ended, for the error message."""
        self._retire(slot, worker, restart=True)
        # The executor's own thread reaps the dead process (then ends): once it has,
        # the exit code is known.  Bounded, like every wait on a process here.
        if worker.watcher is not None:
            worker.watcher.join(KILL_WAIT)
        process = worker.process
        if process is None:
            return "(not started)"
        return f"(pid {process.pid}) {_exit_description(process.exitcode)}"

    def _drained(self) -> bool:
        with self.lock:
            return (
                not self._heap
                and all(not slot.jobs for slot in self._slots)
                and not self._retiring
            )

    def _close_everything(self) -> None:
        for slot in self._slots:
            worker = slot.worker
            if worker is None:
                continue
            if slot.jobs:  # only after a failure of the service thread itself
                self._kill(worker, "shutdown")
                with self.lock:
                    slot.jobs.clear()  # their tasks have ended (_fail_everything)
            self._retire(slot, worker, restart=False)
        # Normally nothing is left here (the loop ends once every process has exited);
        # after a failure of the service thread, what is left is killed: no process may
        # outlive its pool.
        with self.lock:
            leftovers = [worker for worker in self._retiring if worker.process is not None]
            self._retiring.clear()
        for worker in leftovers:
            self._kill(worker, "shutdown")
        deadline = time.monotonic() + KILL_WAIT
        for worker in leftovers:  # each executor's thread reaps its process, then ends
            if worker.watcher is not None:
                worker.watcher.join(max(0.0, deadline - time.monotonic()))
        with self._wake_lock:
            for conn in (self._wake_r, self._wake_w):
                if conn is not None:
                    _close(conn)
            self._wake_w = None

    # -- observing ------------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """Return a consistent snapshot of the counters."""
        with self.lock:
            busy = [slot for slot in self._slots if slot.jobs]
            return PoolStatistics(
                name=self.name,
                kind=self.kind,
                max_workers=self.max_workers,
                workers=sum(1 for slot in self._slots if slot.worker is not None),
                busy=len(busy),
                abandoned=sum(1 for slot in busy if slot.abandoned()),
                **self.counters(),
                restarts=self._restarts,
            )

    def queued_tasks(self) -> list[TaskHandle[Any]]:
        """Return the tasks still waiting (a snapshot)."""
        with self.lock:
            seen: dict[int, TaskHandle[Any]] = {}
            for _, _, job in self._heap:
                if job.task.state is _QUEUED:
                    seen[job.task.id] = job.task
            return list(seen.values())

    def still_running(self) -> list[str]:
        """Names of the tasks handed to a worker process that is still busy."""
        with self.lock:
            return [job.task.name for slot in self._slots for job in slot.jobs]

    def threads(self) -> list[threading.Thread]:
        """The pool's own live thread (the executors' threads end before it does)."""
        service = self._service
        return [service] if service is not None and service.is_alive() else []

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

    # -- shutting down ----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new work; queued work still runs."""
        with self.lock:
            self._accepting = False

    def stop(self) -> None:
        """Refuse new work; the processes exit once the queue is empty."""
        with self.lock:
            self._accepting = False
            self._stopping = True
        self._wake()

    def join(self, deadline: float) -> bool:
        """Wait for the processes to exit until ``deadline``, then kill what is left.

        Unlike threads, processes can always be stopped: past the deadline, every busy
        worker process is killed (its task ends cancelled with reason "shutdown") and
        every task still queued is cancelled, so no process outlives the pool.
        """
        service = self._service
        if service is None:
            return True
        service.join(max(0.0, deadline - time.monotonic()))
        if service.is_alive():
            self._emergency_stop("shutdown")
            service.join(KILL_WAIT)
        return not service.is_alive()

    def _emergency_stop(self, reason: str, *, hurry: bool = True) -> None:
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

    def __repr__(self) -> str:
        return f"<ProcessPool {self.name!r} max_workers={self.max_workers}>"


def _exit_description(code: int | None) -> str:
    if code is None:
        return "died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (signal {-code})"
    return f"exited with code {code}"


def _startup_hint(worker: _Worker) -> str:
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


def _drain(conn: Connection) -> None:
    try:
        while conn.poll(0):
            conn.recv_bytes()
    except (EOFError, OSError):
        pass


def _close(conn: Connection) -> None:
    try:
        conn.close()
    except OSError:
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
_live_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_registered = False


def _register_exit_hook(pool: ProcessPool) -> None:
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
        pool._emergency_stop("shutdown", hurry=False)
    deadline = time.monotonic() + RETIRE_WAIT + KILL_WAIT
    for pool in pools:
        service = pool._service
        if service is not None and service is not threading.current_thread():
            service.join(max(0.0, deadline - time.monotonic()))
