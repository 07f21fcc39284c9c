"""One outline shared by the remote pools (worker processes, a Dask cluster).

A remote pool ships each task elsewhere and drives it from one *service thread* of its
own.  The steps every such pool takes exist once, here; a backend fills in how a job
travels (``_place_for``, ``_send``) and how its service thread waits (``_wait_for_work``)::

    any thread                           the service thread (one per pool: _serve)
    ----------                           -----------------------------------------
    submit / submit_map:                 until stopped and drained:
      pickle now (SerializationError       _wait_for_work       woken, or a deadline
        if it cannot travel)               _handle_completions  outcomes that came back
      cut a map into chunks                _signal_ended        tell the backend about
      under the lock: mark_queued,                              tasks that ended here
        count, push on the heap ──wake──►  _handle_deadlines    the backend's own clocks
                                           _dispatch            pop (priority, FIFO) while
    cancel / timeout / owner destroyed                          the backend has room:
      (the task ends) ───────────wake──►                        begin() the task, _send it
    an outcome comes back ─► _finish_job: task.succeed(v), or a map's chunk stored
                             (finish() after the last); errors: task.fail(e)

A job is a whole task or one chunk of a ``map``; a map's first job to start begins its
task (``begin``), the others join it while it runs, and one chunk's failure ends it.
Progress that arrives from elsewhere goes through :func:`apply_progress`, exactly as
``TaskContext.progress`` on a thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .._errors import describe_exception
from ._pickling import dump_items, dumps_checked, pickle_dumps
from ._pool import TaskCounters, still_queued
from ._remotejob import MapState, RemoteJob
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from .._core._handle import TaskHandle
    from ._map import MapHandle

__all__ = ("CHUNKS_PER_WORKER", "RemotePool", "apply_progress")

logger = logging.getLogger("casare_workers")

#: A ``map`` is cut into about this many chunks per worker when no chunksize is given:
#: few enough that pickling and the round trip are paid a handful of times, enough
#: that the workers finish together (the classic ``multiprocessing.Pool`` rule).
CHUNKS_PER_WORKER = 4


def apply_progress(
    task: TaskHandle[Any], progress: tuple[int, int] | None, status: str | None
) -> None:
    """Record progress that arrived from elsewhere; the engine delivers it within a frame.

    Runs on whichever thread received it (any thread).  Latest value wins, exactly as
    ``TaskContext.progress`` on a thread.
    """
    if progress is not None:
        task.report_progress(*progress)
    if status is not None:
        task.report_status(status)


class RemotePool(TaskCounters):
    """The outline of a pool that runs its work elsewhere; see the module docstring.

    Thread-safe.  Methods named ``_x_locked`` or documented so are called with
    :attr:`lock` held; the others take it as needed.  The service thread is the only
    one that pops the heap, starts tasks and finishes jobs.
    """

    kind: ClassVar[str]
    #: Where the work runs, for error messages.
    where: ClassVar[str] = "a worker process"
    #: Whether ``begin()`` starts a task's timeout at dispatch (False: the backend starts
    #: it with ``watch_timeout()`` once the work can really start).
    watch_at_begin: ClassVar[bool] = True
    #: The backend's kind of job (a subclass of :class:`RemoteJob` with its own fields).
    job_class: ClassVar[type[RemoteJob]] = RemoteJob
    #: What every task ends with if the service thread itself fails (a bug of ours).
    service_error_class: ClassVar[type[Exception]]
    #: Seconds :meth:`join` still waits once its deadline has passed and the pool was
    #: told to drop everything.
    abort_wait: ClassVar[float] = 5.0

    def __init__(self, name: str, max_workers: int) -> None:
        self.name = name
        self.max_workers = max_workers
        self.lock = threading.Lock()
        self._heap: list[tuple[int, int, RemoteJob]] = []
        self._order = itertools.count()
        self._service: threading.Thread | None = None
        self._stopping = False  # let the service thread end once everything is done
        self._abort = False  # drop what is queued and stop what runs (shutdown's time is up)
        self._restarts = 0

    # -- what a backend provides --------------------------------------------------------

    def _dumps(self, obj: object) -> bytes:
        """Pickle a call or a chunk for the backend (pickle; Dask: cloudpickle)."""
        return pickle_dumps(obj)

    def _refuse_locked(self) -> None:
        """Raise if the backend cannot take work now (lock held); nothing by default.

        The pool's own refusal (shut down, failed) is :meth:`register_locked`'s.
        """

    def _queued_locked(self) -> None:
        """Work was just queued (lock held): e.g. start the service thread."""

    def _wake(self) -> None:
        """Wake the service thread (any thread, without the lock)."""
        raise NotImplementedError

    def _wait_for_work(self) -> None:
        """Block the service thread until it is woken or a deadline passes."""
        raise NotImplementedError

    def _handle_completions(self) -> None:
        """Finish the jobs whose outcome came back (service thread)."""
        raise NotImplementedError

    def _signal_ended(self) -> None:
        """Tell the backend about jobs whose task ended here (service thread)."""
        raise NotImplementedError

    def _handle_deadlines(self) -> None:
        """Act on the backend's own clocks (service thread); nothing by default."""

    def _place_for(self, job: RemoteJob) -> Any:
        """Where ``job`` would run now (lock held); None: no room, leave it queued."""
        raise NotImplementedError

    def _send(self, place: Any, job: RemoteJob) -> None:
        """Ship ``job`` (its task has begun) to ``place`` (service thread, no lock)."""
        raise NotImplementedError

    def _job_started(self, job: RemoteJob) -> None:
        """``job`` began its task (service thread); nothing by default."""

    def _abort_running(self) -> None:
        """Shutdown's time is up: stop the work in flight (service thread)."""

    def _drained(self) -> bool:
        """Nothing queued, nothing in flight: a stopping pool's service thread may end."""
        raise NotImplementedError

    def _jobs_in_flight(self) -> list[RemoteJob]:
        """The jobs handed to the backend and not finished (lock held)."""
        raise NotImplementedError

    def _service_error(self, exc: BaseException) -> BaseException:
        """The error every task ends with when the service thread itself fails."""
        error = self.service_error_class(
            f"pool {self.name!r} stopped working: its service thread failed "
            f"({describe_exception(exc)}; the log has the traceback); create a new "
            "WorkerManager to run more work"
        )
        error.__cause__ = exc
        return error

    def _close_everything(self) -> None:
        """The service thread ends: release what the backend holds."""

    def _usage_locked(self) -> tuple[int, int, int]:
        """``(workers, busy, abandoned)`` for :meth:`statistics` (lock held)."""
        raise NotImplementedError

    # -- submitting (any thread) ---------------------------------------------------------

    def submit(self, task: TaskHandle[Any], priority: int) -> None:
        """Pickle the call now (refusing what cannot travel), then queue it."""
        self.check_accepting()
        payload = dumps_checked(task.name, *task.call[:3], dumps=self._dumps, where=self.where)
        job = self.job_class(task, payload, priority)
        with self.lock:
            self._refuse_locked()
            self.register_locked(task)
            self._push_locked(job)
            self._queued_locked()
        self._wake()

    def submit_map(self, task: MapHandle[Any], priority: int) -> None:
        """Cut the items into chunks, pickle each now, and queue them as one task."""
        self.check_accepting()
        items = task.items
        n = len(items)
        size = task.fixed_chunksize or max(
            1, math.ceil(n / (self.max_workers * CHUNKS_PER_WORKER))
        )
        name, dumps, where = task.name, self._dumps, self.where
        state = MapState(
            dumps_checked(f"map({name})", task.call.fn, (), {}, dumps=dumps, where=where)
        )
        jobs = [
            self.job_class(
                task,
                dump_items(name, items, start, size, dumps, where),
                priority,
                state,
                start,
                count,
            )
            for start in range(0, n, size)
            if (count := min(size, n - start))
        ]
        with self.lock:
            self._refuse_locked()
            self.register_locked(task)
            task.set_chunks(len(jobs))
            for job in jobs:
                self._push_locked(job)
            if jobs:
                self._queued_locked()
        if not jobs:
            task.finish()
            return
        self._wake()

    def _push_locked(self, job: RemoteJob) -> None:
        if job.order < 0:
            job.order = next(self._order)
        heapq.heappush(self._heap, (-job.priority, job.order, job))

    def on_cancel(self, task: TaskHandle[Any], was_running: bool) -> None:
        """Nothing here: the done callback set at dispatch covers cancels and timeouts."""

    # -- the service thread ---------------------------------------------------------------

    def _serve(self) -> None:
        """The service thread's loop (see the module docstring)."""
        try:
            while True:
                self._wait_for_work()
                self._handle_completions()
                self._signal_ended()
                self._handle_deadlines()
                self._dispatch()
                if self._stopping and self._drained():
                    return
        except BaseException as exc:
            self._service_failed(exc)
        finally:
            self._close_everything()

    def _service_failed(self, exc: BaseException) -> None:
        """The service thread is failing (a bug of ours): no task may wait for it for ever.

        Logged once; every queued and running task ends with :meth:`_service_error`,
        and ``submit`` refuses new work saying why.  Called in the ``except`` block.
        """
        logger.exception("pool %r: the service thread failed", self.name)
        with self.lock:
            self._accepting = False
            self._failure = exc
            jobs = [job for _, _, job in self._heap]
            self._heap.clear()
            jobs += self._jobs_in_flight()
        error = self._service_error(exc)
        for job in jobs:
            job.task.fail(error)

    def _dispatch(self) -> None:
        """Hand queued jobs to the backend while it has room (service thread)."""
        with self.lock:
            dropped = [job for _, _, job in self._heap] if self._abort else []
            if dropped:
                self._heap.clear()
        for job in dropped:  # shutting down with no time left: what is queued ends now
            job.task.cancel(reason="shutdown")
        if self._abort:
            self._abort_running()
        while True:
            with self.lock:
                if not self._heap:
                    return
                place = self._place_for(self._heap[0][2])
                if place is None:
                    return
                job = heapq.heappop(self._heap)[2]
            if self._start_job(job):
                self._send(place, job)

    def _start_job(self, job: RemoteJob) -> bool:
        """Begin ``job``'s task (a map's first chunk begins it); False: drop the job."""
        task = job.task
        state = job.map
        if job.begun or (state is not None and state.started):
            job.begun = True
            return not task.done()
        if not task.begin(watch=self.watch_at_begin):
            return False
        job.begun = True
        if state is not None:
            state.started = True
        self._job_started(job)
        task.when_done(self._task_ended)
        return True

    def _task_ended(self, task: TaskHandle[Any]) -> None:
        # Runs on whichever thread ended the task.  Only an ending decided elsewhere
        # (cancel, timeout, owner destroyed) needs the service thread's attention.
        if threading.current_thread() is not self._service:
            self._wake()

    def _finish_job(
        self, job: RemoteJob, value: Any, progress: tuple[int, int] | None, status: str | None
    ) -> None:
        """``job`` returned ``value`` (a task's result, or a chunk's list of results)."""
        task = job.task
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

    def _map_progress(self, task: MapHandle[Any], state: MapState) -> None:
        """Report a map's progress as ``(items done, total)``."""
        total = task.total
        apply_progress(task, (min(state.done, total), total), None)

    # -- observing ------------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """Return a consistent snapshot of the counters."""
        with self.lock:
            workers, busy, abandoned = self._usage_locked()
            return PoolStatistics(
                name=self.name,
                kind=self.kind,
                max_workers=self.max_workers,
                workers=workers,
                busy=busy,
                abandoned=abandoned,
                **self.counters(),
                restarts=self._restarts,
            )

    def queued_tasks(self) -> list[TaskHandle[Any]]:
        """Return the tasks still waiting (a snapshot)."""
        with self.lock:
            return still_queued(job.task for _, _, job in self._heap)

    # -- shutting down ----------------------------------------------------------------------

    def stop(self) -> None:
        """Refuse new work; the service thread ends once nothing is queued or in flight."""
        with self.lock:
            self._accepting = False
            self._stopping = True
        self._wake()

    def join(self, deadline: float) -> bool:
        """Wait for the work in flight until ``deadline``, then drop what is left.

        Past the deadline every queued task is cancelled and the work in flight is
        stopped as far as the backend can (:meth:`emergency_stop`).
        """
        if self.join_service(deadline):
            return True
        self.emergency_stop("shutdown")
        return self.join_service(time.monotonic() + self.abort_wait)

    def join_service(self, deadline: float) -> bool:
        """Wait until the service thread has ended or ``deadline`` passes (monotonic).

        Returns:
            True if it has ended (or never started); False on its own thread.
        """
        service = self._service
        if service is None:
            return True
        if service is threading.current_thread():
            return False
        service.join(max(0.0, deadline - time.monotonic()))
        return not service.is_alive()

    def emergency_stop(self, reason: str, *, hurry: bool = True) -> None:
        """Drop the queue and stop the work in flight (any thread)."""
        with self.lock:
            self._accepting = False
            self._stopping = True
            self._abort = True
        self._wake()
