"""A pool on a Dask cluster: the same API as the local pools, beyond one machine.

Optional: needs ``casare_workers[dask]`` (``distributed``); this is the only module
that imports it.  Configure it like any pool::

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
vanished scheduler can delay results, not freeze the window.  The connection is made
when the pool is built, in the background; while it is being made, submitted work
waits in the queue; if it fails, the queued tasks end with ``ClusterUnavailableError``
and later submits raise it at once (and start a new attempt), so nothing waits for a
cluster that is not there.  An attempt is bounded by ``connect_timeout`` (plus
:data:`CONNECT_GRACE`) even against a scheduler that never answers, and a stopping pool
does not wait for one that no task needs.

What a cluster cannot do that a local process pool does: kill a task.  A cancelled or
timed-out task is cancelled in Dask (released at once if it had not started) and its
``ctx`` reports the cancellation; a running function that ignores it finishes on its
worker thread and its result is dropped.  Dask re-runs a task whose worker died (up
to the scheduler's ``allowed-failures``, then the task ends with Dask's
``KilledWorker``); so a task function should be safe to run twice.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import logging
import math
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from .._config import PoolConfig
from .._core._state import TaskState
from .._errors import (
    ClusterUnavailableError,
    ConfigurationError,
    ManagerShutdownError,
    describe_exception,
)
from .._introspect import PLAIN
from . import _daskworker
from ._pool import TaskCounters
from ._remote import apply_progress, dump_items, dumps_checked, start_task
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from .._core._handle import TaskHandle
    from ._map import MapHandle

__all__ = ("DaskPool",)

logger = logging.getLogger("casare_workers")

# Imported as plain modules: neither ships complete type information, and both are
# optional dependencies (an ImportError here becomes a ConfigurationError naming the
# extra to install, in _pool.build_pool).
distributed: Any = importlib.import_module("distributed")
cloudpickle: Any = importlib.import_module("cloudpickle")

# The worker side travels by value: clusters need no casare_workers (nor Qt) installed.
cloudpickle.register_pickle_by_value(_daskworker)

_QUEUED, _RUNNING = TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _FAILED = TaskState.SUCCEEDED, TaskState.FAILED

#: Chunks per unit of ``max_workers`` for a ``map`` without an explicit chunksize.
CHUNKS_PER_WORKER = 4
#: Seconds a blocking Dask call may take on the service thread (fetching a result,
#: cancelling, closing) before the pool gives up on it.
CALL_TIMEOUT = 10.0
#: Seconds a connection attempt may take beyond ``connect_timeout`` before the pool
#: gives up on it (Dask's own timeout does not cover every stage: see _ConnectAttempt).
CONNECT_GRACE = 1.0


def _dumps(obj: object) -> bytes:
    data: bytes = cloudpickle.dumps(obj)
    return data


class _ConnectAttempt:
    """One ``distributed.Client(address)`` call, on a daemon thread of its own.

    Dask's ``timeout`` bounds reaching the scheduler but not its handshake: a peer that
    accepts the connection and never answers (a hung scheduler, a wrong port behind a
    proxy) holds the call for ever (measured with distributed 2026.8: its handshake
    read has no timeout).  So the service thread waits for the attempt with its own
    bound and stays free to serve ``stop()``; an attempt given up that still succeeds
    later closes its client, so nothing is left connected.
    """

    def __init__(self, pool: DaskPool) -> None:
        self._pool = pool
        self._address = pool._address
        self._timeout = pool._connect_timeout
        self._lock = threading.Lock()
        self.client: Any = None
        self.error: BaseException | None = None
        self.done = False
        self._given_up = False
        self.thread = threading.Thread(
            target=self._run, name=f"casare-{pool.name}-connect", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        client: Any = None
        error: BaseException | None = None
        try:
            client = distributed.Client(self._address, timeout=self._timeout, set_as_default=False)
        except Exception as exc:
            error = exc
        with self._lock:
            self.client, self.error, self.done = client, error, True
            late = self._given_up
        if late:
            if client is not None:
                _quietly(client.close, CALL_TIMEOUT)
        else:
            self._pool._poke()  # the service thread waits for this

    def give_up(self) -> bool:
        """Abandon the attempt; False if it has just ended (then use its outcome)."""
        with self._lock:
            if self.done:
                return False
            self._given_up = True
            return True


class _MapState:
    __slots__ = ("done", "fn_payload", "started")

    def __init__(self, fn_payload: bytes) -> None:
        self.fn_payload = fn_payload
        self.done = 0
        self.started = False


class _Job:
    """One Dask call: a whole task, or one chunk of a ``map``."""

    __slots__ = ("count", "future", "map", "payload", "signalled", "start", "task")

    def __init__(
        self,
        task: TaskHandle[Any],
        payload: bytes,
        map_state: _MapState | None = None,
        start: int = 0,
        count: int = 0,
    ) -> None:
        self.task = task
        self.payload = payload
        self.map = map_state
        self.start = start
        self.count = count
        self.future: Any = None
        self.signalled = False


class DaskPool(TaskCounters):
    """A manager pool of ``kind="dask"``: tasks run on a Dask cluster.

    Internal: users reach it through ``WorkerManager``.  Thread-safe.
    """

    kind = "dask"

    def __init__(self, name: str, config: PoolConfig) -> None:
        client = config.client
        if client is not None:
            if not isinstance(client, distributed.Client):
                raise ConfigurationError(
                    f"client= must be a distributed.Client, got {type(client).__name__}"
                )
            if client.asynchronous:
                raise ConfigurationError(
                    "client= must be a synchronous distributed.Client (asynchronous=False): "
                    "the pool calls it from its own thread"
                )
        self.name = name
        self.max_workers = config.max_workers
        self._address: str | None = config.address
        self._client: Any = client
        self._owns_client = client is None
        self._retries = config.retries
        self._connect_timeout = config.connect_timeout
        self.lock = threading.Lock()
        self._cv = threading.Condition(self.lock)
        self._dirty = True  # the service thread connects as soon as it starts
        self._heap: list[tuple[int, int, _Job]] = []
        self._seq = itertools.count()
        self._inflight: dict[Any, _Job] = {}
        self._by_id: dict[int, TaskHandle[Any]] = {}
        self._completions: deque[Any] = deque()
        self._token = uuid.uuid4().hex[:12]
        self._topic = f"casare-progress-{name}-{self._token}"
        self._events_set: list[str] = []
        self._status = "connecting"
        self._attempt: _ConnectAttempt | None = None
        self._error: BaseException | None = None
        self._cluster_workers = 0
        self._accepting = True
        self._stopping = False
        self._abort = False
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

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` once connected (None while connecting or unreachable)."""
        return self._client if self._status == "ready" else None

    # -- submitting (any thread) ---------------------------------------------------------

    def _describe_target(self) -> str:
        return f"the Dask scheduler at {self._address}" if self._address else "its Dask client"

    def _refuse(self) -> None:
        # Called with the lock held.
        if not self._accepting:
            raise ManagerShutdownError(
                f"pool {self.name!r} is shut down; create a new WorkerManager to run more work"
            )
        if self._status == "unavailable":
            error = self._error
            self._status = "connecting"  # try again in the background
            self._notify()
            raise ClusterUnavailableError(
                f"pool {self.name!r} cannot reach {self._describe_target()} ({error}); "
                "nothing was queued.  Start the scheduler and its workers (or check the "
                "address and the network), then submit again: the pool is reconnecting"
            )

    def submit(self, task: TaskHandle[Any], priority: int) -> None:
        """Pickle the call now (refusing what cannot travel), then queue it."""
        payload = dumps_checked(
            task.name,
            *task.call[:3],
            dumps=_dumps,
            where="a Dask worker",
        )
        with self._cv:
            self._refuse()
            self._register(task)
            heapq.heappush(self._heap, (-priority, next(self._seq), _Job(task, payload)))
            self._notify()

    def submit_map(self, task: MapHandle[Any], priority: int) -> None:
        """Cut the items into chunks, pickle them now, and queue them as one task."""
        items = task.items
        n = len(items)
        size = task.fixed_chunksize or max(
            1, math.ceil(n / (self.max_workers * CHUNKS_PER_WORKER))
        )
        where = "a Dask worker"
        fn_payload = dumps_checked(
            f"map({task.name})", task.call.fn, (), {}, dumps=_dumps, where=where
        )
        state = _MapState(fn_payload)
        name = task.name
        jobs = [
            _Job(task, dump_items(name, items, start, size, _dumps, where), state, start, count)
            for start in range(0, n, size)
            if (count := min(size, n - start))
        ]
        with self._cv:
            self._refuse()
            self._register(task)
            task.set_chunks(len(jobs))
            for job in jobs:
                heapq.heappush(self._heap, (-priority, next(self._seq), job))
            self._notify()
        if not jobs:
            task.finish()

    def _register(self, task: TaskHandle[Any]) -> None:
        # Called with the lock held.
        task.mark_queued()
        self.count_submitted()

    def _notify(self) -> None:
        # Called with the lock held.
        self._dirty = True
        self._cv.notify()

    def _poke(self) -> None:
        with self._cv:
            self._notify()

    # -- the protocol's accounting (called with the lock held) ------------------------------

    def on_cancel(self, task: TaskHandle[Any], was_running: bool) -> None:
        """Nothing here: the done callback set at dispatch covers cancels and timeouts."""

    # -- the service thread ------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._dirty:
                        self._cv.wait()
                    self._dirty = False
                    connect = self._status == "connecting" and not self._stopping
                if connect:
                    self._connect()
                self._handle_completions()
                self._signal_ended()
                self._dispatch()
                with self._cv:
                    if self._stopping and self._nothing_to_run():
                        return
        except BaseException:
            logger.exception("pool %r: the Dask service thread failed", self.name)
            raise
        finally:
            self._close()

    def _connect(self) -> None:
        client = self._client
        try:
            if client is None or (self._owns_client and client.status != "running"):
                if client is not None:
                    _quietly(client.close, CALL_TIMEOUT)
                client = self._open_client()
                if client is None:  # stopped meanwhile, with nothing left to run
                    return
            elif client.status != "running":
                raise OSError(f"the client given to the pool is {client.status}")
            client.subscribe_topic(self._topic, self._on_event)
            workers = len(client.scheduler_info().get("workers", {}))
        except Exception as exc:
            self._unavailable(exc)
            return
        with self._cv:
            self._client = client
            self._status = "ready"
            self._error = None
            self._cluster_workers = workers
            self._dirty = True

    def _nothing_to_run(self) -> bool:
        # Called with the lock held: nothing in flight, and every queued job's task has
        # ended (cancelled by the shutdown; dropped from the heap when dispatched).
        return not self._inflight and all(job.task.done() for _, _, job in self._heap)

    def _open_client(self) -> Any:
        """Connect, within ``connect_timeout`` (+ a grace) whatever the scheduler does.

        Returns:
            The client, or None if the pool was stopped meanwhile with nothing left to
            run (a connection nobody needs is not waited for).

        Raises:
            Exception: The attempt failed, or timed out.
        """
        previous = self._attempt
        if previous is not None and previous.thread.is_alive():
            # Given up earlier and still hanging in Dask: one such thread is enough.
            raise TimeoutError("an earlier connection attempt has still had no answer")
        attempt = self._attempt = _ConnectAttempt(self)
        deadline = time.monotonic() + self._connect_timeout + CONNECT_GRACE
        timed_out = False
        with self._cv:
            while not attempt.done:
                if self._abort or (self._stopping and self._nothing_to_run()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                self._cv.wait(remaining)
        if attempt.give_up():
            if timed_out:
                raise TimeoutError(
                    f"no answer within the connect_timeout of {self._connect_timeout} s"
                )
            return None
        if attempt.error is not None:
            raise attempt.error
        return attempt.client

    def _unavailable(self, exc: BaseException) -> None:
        with self._cv:
            self._status = "unavailable"
            self._error = exc
            dropped = [job for _, _, job in self._heap]
            self._heap.clear()
        logger.warning("pool %r: cannot reach %s: %s", self.name, self._describe_target(), exc)
        for job in dropped:
            job.task.fail(
                ClusterUnavailableError(
                    f"task {job.task.name!r} never reached the cluster: pool {self.name!r} "
                    f"cannot reach {self._describe_target()} ({exc})"
                ),
            )

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
            self._notify()

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
            except ClusterUnavailableError as exc:
                self._end_lost(job, exc)
                continue
            except Exception as exc:
                self._end_lost(job, exc)
                continue
            self._finish(job, value)

    def _end_lost(self, job: _Job, exc: BaseException) -> None:
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

    def _finish(self, job: _Job, value: Any) -> None:
        task = job.task
        state = job.map
        if state is None:
            result, progress, status = value
            apply_progress(task, progress, status)
            task.succeed(result)
            return
        mapped = cast("MapHandle[Any]", task)
        mapped.store_results(job.start, value)
        state.done += job.count
        if state.done >= mapped.total:
            mapped.finish()
        else:
            apply_progress(mapped, (state.done, mapped.total), None)

    def _forget(self, job: _Job) -> None:
        with self._cv:
            if job.map is None or not any(j.task is job.task for j in self._inflight.values()):
                self._by_id.pop(job.task.id, None)

    def _cancel_name(self, task: TaskHandle[Any]) -> str:
        return f"casare-cancel-{self._token}-{task.id}"

    def _signal_ended(self) -> None:
        """Tell Dask about tasks that ended here while in flight (cancel, timeout)."""
        with self._cv:
            ended = [j for j in self._inflight.values() if j.task.done() and not j.signalled]
            for job in ended:
                job.signalled = True
        client = self._client
        if client is None:
            return
        for job in ended:
            name = self._cancel_name(job.task)
            if job.map is None:
                try:
                    distributed.Event(name, client=client).set()
                    self._events_set.append(name)
                except Exception as exc:  # the scheduler is gone: nothing left to stop
                    logger.debug("pool %r: could not set %s: %s", self.name, name, exc)
            future = job.future
            if future is not None:
                _quietly(future.cancel)

    def _dispatch(self) -> None:
        with self._cv:
            if self._abort:
                dropped = [job for _, _, job in self._heap]
                self._heap.clear()
                running = [job.task for job in self._inflight.values()]
            else:
                dropped, running = [], []
        for job in dropped:
            job.task.cancel(reason="shutdown")
        for task in running:
            task.cancel(reason="shutdown")
        if running:
            self._signal_ended()
            # A scheduler that is gone never reports these cancellations back: forget
            # them, so that shutting down cannot wait for it.
            with self._cv:
                self._inflight.clear()
        while True:
            with self._cv:
                if (
                    self._status != "ready"
                    or not self._heap
                    or len(self._inflight) >= self.max_workers
                ):
                    return
                job = heapq.heappop(self._heap)[2]
                client = self._client
            assert client is not None
            if not self._start(job):
                continue
            if client.status != "running":
                with self._cv:
                    heapq.heappush(self._heap, (0, next(self._seq), job))
                self._unavailable(OSError(f"the connection to the scheduler is {client.status}"))
                return
            self._send(client, job)

    def _start(self, job: _Job) -> bool:
        task = job.task
        state = job.map
        if state is not None and state.started:
            return not task.done()
        if not start_task(task, self):
            return False
        if state is not None:
            state.started = True
        with self._cv:
            self._by_id[task.id] = task
        task.when_done(lambda _: self._poke())
        return True

    def _send(self, client: Any, job: _Job) -> None:
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

    def _close(self) -> None:
        client = self._client
        if client is None:
            return
        if client.status == "running":
            _quietly(client.unsubscribe_topic, self._topic)
            for name in self._events_set:  # frees the scheduler's record of each
                _quietly(distributed.Event(name, client=client).clear)
        if self._owns_client:
            _quietly(client.close, CALL_TIMEOUT)

    # -- observing ------------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """Return a consistent snapshot of the counters."""
        with self._cv:
            busy = len(self._inflight)
            return PoolStatistics(
                name=self.name,
                kind=self.kind,
                max_workers=self.max_workers,
                workers=self._cluster_workers if self._status == "ready" else 0,
                busy=busy,
                abandoned=sum(1 for job in self._inflight.values() if job.task.done()),
                **self.counters(),
            )

    def queued_tasks(self) -> list[TaskHandle[Any]]:
        """Return the tasks still waiting (a snapshot)."""
        with self._cv:
            seen = {job.task.id: job.task for _, _, job in self._heap}
            return [task for task in seen.values() if task.state is _QUEUED]

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

    # -- shutting down ----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new work; queued work still runs."""
        with self._cv:
            self._accepting = False

    def stop(self) -> None:
        """Refuse new work; the service thread ends once nothing is queued or in flight."""
        with self._cv:
            self._accepting = False
            self._stopping = True
            self._notify()

    def join(self, deadline: float) -> bool:
        """Wait for the work in flight until ``deadline``, then cancel what is left."""
        self._service.join(max(0.0, deadline - time.monotonic()))
        if self._service.is_alive():
            with self._cv:
                self._abort = True
                self._notify()
            self._service.join(CALL_TIMEOUT)
        return not self._service.is_alive()

    def __repr__(self) -> str:
        return f"<DaskPool {self.name!r} {self._describe_target()} {self._status}>"


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # closing or cancelling against a scheduler that is gone
        logger.debug("dask call %r failed: %s", fn, exc)
