"""A pool on a Dask cluster: the same API as the local pools, beyond one machine.

Optional: needs ``casare_workers[dask]`` (``distributed``); this module and
``_daskclient`` (the connection, the pool's first layer) are the only ones that import
it.  Configure it like any pool::

    WorkerManager(pools={"cluster": PoolConfig(32, kind="dask", address="tcp://10.0.0.5:8786")})

Data flow::

    any thread            service thread (one per pool)             Dask
    ----------            -----------------------------             ----
    submit: cloudpickle ─► heap (priority) ─ ≤ max_workers in flight ─► client.submit(run, bytes)
      (SerializationError,        ▲                                          │
       ClusterUnavailableError)   ├── future done (callback thread) ◄────────┤
                                  ├── structured events ◄── ctx.progress ────┘ (log_event)
    cancel / timeout ──notify────►└── distributed.Event set + future cancelled ─► ctx.cancelled
    signals on the GUI thread ◄── engine ◄── task.succeed | fail | cancel

Every blocking Dask call (connecting, submitting, fetching a result, cancelling,
closing) happens on the pool's service thread, never on the GUI thread: a slow or
vanished scheduler can delay results, not freeze the window.  How the connection is
made, lost and made again is ``_daskclient``'s part; the steps every remote pool takes
(queueing, chunking a ``map``, starting and finishing a task) are ``_remote``'s.

What a cluster cannot do that a local process pool does: kill a task.  A cancelled or
timed-out task is cancelled in Dask (released at once if it had not started) and its
``ctx`` reports the cancellation; a running function that ignores it finishes on its
worker thread and its result is dropped.  Dask re-runs a task whose worker died (up
to the scheduler's ``allowed-failures``, then the task ends with Dask's
``KilledWorker``); so a task function should be safe to run twice.
"""

from __future__ import annotations

import importlib
import threading
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from .._errors import ClusterUnavailableError, describe_exception
from .._introspect import PLAIN
from . import _daskworker
from ._daskclient import CALL_TIMEOUT, DaskConnection, quietly
from ._remote import CHUNKS_PER_WORKER, apply_progress
from ._remotejob import RemoteJob

if TYPE_CHECKING:
    from .._config import PoolConfig
    from .._core._handle import TaskHandle

__all__ = ("CHUNKS_PER_WORKER", "DaskJob", "DaskPool")

# Imported as a plain module: it does not ship complete type information, and it is an
# optional dependency (it comes with ``distributed``).
cloudpickle: Any = importlib.import_module("cloudpickle")

# The worker side travels by value: clusters need no casare_workers (nor Qt) installed.
cloudpickle.register_pickle_by_value(_daskworker)


class DaskJob(RemoteJob):
    """A :class:`RemoteJob` submitted to the cluster (its Dask future, once sent)."""

    __slots__ = ("future",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # as RemoteJob's
        super().__init__(*args, **kwargs)
        self.future: Any = None


class DaskPool(DaskConnection):
    """A manager pool of ``kind="dask"``: tasks run on a Dask cluster.

    Internal: users reach it through ``WorkerManager``.  Thread-safe.
    """

    kind = "dask"
    where = "a Dask worker"
    job_class = DaskJob
    service_error_class = ClusterUnavailableError

    def __init__(self, name: str, config: PoolConfig) -> None:
        super().__init__(name, config)
        self._retries = config.retries
        self._inflight: dict[Any, DaskJob] = {}
        self._by_id: dict[int, TaskHandle[Any]] = {}
        self._completions: deque[Any] = deque()
        self._token = uuid.uuid4().hex[:12]
        self._topic = f"casare-progress-{name}-{self._token}"
        self._service = threading.Thread(
            target=self._serve, name=f"casare-{name}-dask", daemon=True
        )
        self._service.start()

    @property
    def timeout_fate(self) -> str:
        """What happens to a timed-out task (completes ``TaskTimeoutError``'s message)."""
        return (
            "it was cancelled in Dask and its ctx reports the cancellation; a worker "
            "thread that ignores it runs until the function returns, its result is dropped"
        )

    # -- the outline's parts -----------------------------------------------------------------

    def _dumps(self, obj: object) -> bytes:
        data: bytes = cloudpickle.dumps(obj)
        return data

    def _subscribe(self, client: Any) -> None:
        client.subscribe_topic(self._topic, self._on_event)

    def _nothing_to_run_locked(self) -> bool:
        # Nothing in flight, and every queued job's task has ended (cancelled by the
        # shutdown; dropped from the heap when dispatched).
        return not self._inflight and all(job.task.done() for _, _, job in self._heap)

    def _drained(self) -> bool:
        with self._cv:
            return self._nothing_to_run_locked()

    def _jobs_in_flight(self) -> list[RemoteJob]:
        return list(self._inflight.values())

    def _job_started(self, job: RemoteJob) -> None:
        with self._cv:
            self._by_id[job.task.id] = job.task

    def _place_for(self, job: RemoteJob) -> Any:
        if self._status != "ready" or len(self._inflight) >= self.max_workers:
            return None
        return self._client

    def _close_everything(self) -> None:
        # Normally nothing is in flight here; after a failure of the service thread the
        # tasks have ended: tell the cluster, and forget the futures.
        self._abort_running()
        self._close_client(self._topic)

    def _usage_locked(self) -> tuple[int, int, int]:
        workers = self._cluster_workers if self._status == "ready" else 0
        abandoned = sum(1 for job in self._inflight.values() if job.task.done())
        return workers, len(self._inflight), abandoned

    # -- what comes back ---------------------------------------------------------------------

    def _on_event(self, event: tuple[float, Any]) -> None:
        # Runs on the client's event-loop thread: record and return.
        try:
            task_id, current, total, status = event[1]
        except (TypeError, ValueError):
            return
        task = self._by_id.get(task_id)
        if task is not None:
            progress = (current, total) if current >= 0 else None
            apply_progress(task, progress, status)

    def _on_done(self, future: Any) -> None:
        # Runs on Dask's callback thread: hand over, no network calls here.
        with self._cv:
            self._completions.append(future)
            self._notify_locked()

    def _handle_completions(self) -> None:
        while True:
            with self._cv:
                if not self._completions:
                    return
                future = self._completions.popleft()
                job = self._inflight.pop(future.key, None)
            if job is None:
                continue
            self._forget(job)
            task = job.task
            if task.done():
                continue  # cancelled, timed out or failed by another chunk meanwhile
            try:
                status = future.status
                if status == "finished":
                    value = future.result(timeout=CALL_TIMEOUT)
                elif status == "error":
                    error = future.exception(timeout=CALL_TIMEOUT)
                    if error is not None:
                        task.fail(error)
                        continue
                    raise ClusterUnavailableError("the task failed without an exception")
                else:  # cancelled by Dask itself: the scheduler went away
                    raise ClusterUnavailableError(
                        f"the cluster dropped the task ({status}); the connection to "
                        f"{self._describe_target()} was lost"
                    )
            except Exception as exc:
                self._end_lost(job, exc)
                continue
            if job.map is None:
                result, progress, status = value
                self._finish_job(job, result, progress, status)
            else:
                self._finish_job(job, value, None, None)

    def _end_lost(self, job: RemoteJob, exc: BaseException) -> None:
        if self._abort:
            job.task.cancel(reason="shutdown")
            return
        if not isinstance(exc, ClusterUnavailableError):
            error = ClusterUnavailableError(
                f"the result of task {job.task.name!r} could not be fetched from the "
                f"cluster ({describe_exception(exc)})"
            )
            error.__cause__ = exc
            exc = error
        job.task.fail(exc)

    def _forget(self, job: DaskJob) -> None:
        with self._cv:
            if job.map is None or not any(j.task is job.task for j in self._inflight.values()):
                self._by_id.pop(job.task.id, None)

    # -- tasks that ended here ---------------------------------------------------------------

    def _cancel_name(self, task: TaskHandle[Any]) -> str:
        return f"casare-cancel-{self._token}-{task.id}"

    def _signal_ended(self) -> None:
        """Tell Dask about tasks that ended here while in flight (cancel, timeout)."""
        with self._cv:
            ended = [j for j in self._inflight.values() if j.task.done() and not j.signalled]
            for job in ended:
                job.signalled = True
        self._tell_cluster(ended, keep=False)

    def _tell_cluster(self, jobs: list[DaskJob], *, keep: bool) -> None:
        # Set each task's cancel event (ctx.cancelled, ctx.wait) and cancel its future.
        client = self._client
        if client is None:
            return
        for job in jobs:
            if job.map is None:
                self._set_event(client, self._cancel_name(job.task), keep=keep)
            future = job.future
            if future is not None:
                quietly(future.cancel)

    def _abort_running(self) -> None:
        # A scheduler that is gone never reports these cancellations back: forget them,
        # so that shutting down cannot wait for it.  The pool closes next: their cancel
        # events are kept set, for functions that have not looked yet.
        with self._cv:
            running = list(self._inflight.values())
            self._inflight.clear()
            for job in running:
                job.signalled = True
        for job in running:
            job.task.cancel(reason="shutdown")
        self._tell_cluster(running, keep=True)

    # -- sending -------------------------------------------------------------------------------

    def _send(self, place: Any, job: RemoteJob) -> None:
        assert isinstance(job, DaskJob)
        client = place
        if client.status != "running":
            with self._cv:
                self._push_locked(job)
            self._unavailable(OSError(f"the connection to the scheduler is {client.status}"))
            return
        task = job.task
        key = f"{task.name}-{self._token}-{task.id}-{job.start}"
        try:
            if job.map is None and task.call.mode == PLAIN:
                future = client.submit(
                    _daskworker.run_plain,
                    job.payload,
                    key=key,
                    pure=False,
                    priority=task.priority,
                    retries=self._retries,
                )
            elif job.map is None:
                future = client.submit(
                    _daskworker.run,
                    task.id,
                    task.name,
                    task.call.mode,
                    self._topic,
                    self._cancel_name(task),
                    job.payload,
                    key=key,
                    pure=False,
                    priority=task.priority,
                    retries=self._retries,
                )
            else:
                future = client.submit(
                    _daskworker.run_chunk,
                    task.name,
                    job.start,
                    job.map.fn_payload,
                    job.payload,
                    key=key,
                    pure=False,
                    priority=task.priority,
                    retries=self._retries,
                )
        except Exception as exc:
            self._end_lost(job, exc)
            return
        job.future = future
        with self._cv:
            self._inflight[future.key] = job
        future.add_done_callback(self._on_done)

    # -- observing -----------------------------------------------------------------------------

    def still_running(self) -> list[str]:
        """Names of the tasks in flight on the cluster, and a connection attempt under way.

        A connection attempt cannot be interrupted: one given up on (the pool stopped,
        or the scheduler never answered) goes on, on its daemon thread, until Dask
        returns; a shutdown reports it here instead of claiming to be clean.
        """
        with self._cv:
            names = [job.task.name for job in self._inflight.values()]
        attempt = self._attempt
        if attempt is not None and attempt.thread.is_alive():
            names.append(f"connecting to {self._describe_target()}")
        return names

    def threads(self) -> list[threading.Thread]:
        """The pool's own live threads (Dask's client threads are Dask's)."""
        attempt = self._attempt
        return [
            thread
            for thread in (self._service, attempt.thread if attempt is not None else None)
            if thread is not None and thread.is_alive()
        ]

    def __repr__(self) -> str:
        return f"<DaskPool {self.name!r} {self._describe_target()} {self._status}>"
