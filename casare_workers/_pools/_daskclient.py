"""A Dask pool's connection: the ``distributed.Client``, made and closed off the GUI thread.

The first layer of :class:`~._daskpool.DaskPool` over the remote outline.  The
connection is made when the pool is built, on the pool's service thread; while it is
being made, submitted work waits in the queue; if it fails, the queued tasks end with
``ClusterUnavailableError`` and later submits raise it at once (and start a new attempt),
so nothing waits for a cluster that is not there::

    status:  connecting ──client ready──► ready ──connection lost──► unavailable
                 ▲                                                        │
                 └─────────────── a submit (raises, and retries) ─────────┘

An attempt is bounded by ``connect_timeout`` (plus :data:`CONNECT_GRACE`) even against a
scheduler that never answers (see :class:`ConnectAttempt`), and a stopping pool does not
wait for one that no task needs.

This module and ``_daskpool`` are the only ones that import ``distributed``
(an optional dependency: ``casare_workers[dask]``).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .._errors import ClusterUnavailableError, ConfigurationError
from ._remote import RemotePool

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._config import PoolConfig

__all__ = ("CALL_TIMEOUT", "CONNECT_GRACE", "ConnectAttempt", "DaskConnection", "quietly")

logger = logging.getLogger("casare_workers")

# Imported as a plain module: it does not ship complete type information, and it is an
# optional dependency (an ImportError here becomes a ConfigurationError naming the
# extra to install, in _pool.build_pool).
distributed: Any = importlib.import_module("distributed")

#: Seconds a blocking Dask call may take on the service thread (fetching a result,
#: cancelling, closing) before the pool gives up on it.
CALL_TIMEOUT = 10.0
#: Seconds a connection attempt may take beyond ``connect_timeout`` before the pool
#: gives up on it (Dask's own timeout does not cover every stage: see ConnectAttempt).
CONNECT_GRACE = 1.0


class ConnectAttempt:
    """One ``distributed.Client(address)`` call, on a daemon thread of its own.

    Dask's ``timeout`` bounds reaching the scheduler but not its handshake: a peer that
    accepts the connection and never answers (a hung scheduler, a wrong port behind a
    proxy) holds the call for ever (measured with distributed 2026.8: its handshake
    read has no timeout).  So the service thread waits for the attempt with its own
    bound and stays free to serve ``stop()``; an attempt given up that still succeeds
    later closes its client, so nothing is left connected.
    """

    def __init__(
        self, name: str, address: str | None, timeout: float, done: Callable[[], None]
    ) -> None:
        self._address = address
        self._timeout = timeout
        self._done = done  # called (on the attempt's thread) when it ends in time
        self._lock = threading.Lock()
        self.client: Any = None
        self.error: BaseException | None = None
        self.done = False
        self._given_up = False
        self.thread = threading.Thread(
            target=self._run, name=f"casare-{name}-connect", daemon=True
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
                quietly(client.close, CALL_TIMEOUT)
        else:
            self._done()  # the service thread waits for this

    def give_up(self) -> bool:
        """Abandon the attempt; False if it has just ended (then use its outcome)."""
        with self._lock:
            if self.done:
                return False
            self._given_up = True
            return True


class DaskConnection(RemotePool):
    """A Dask pool's first layer: its client, its status, and the events it set."""

    abort_wait = CALL_TIMEOUT

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
        super().__init__(name, config.max_workers)
        self._address: str | None = config.address
        self._client: Any = client
        self._owns_client = client is None
        self._connect_timeout = config.connect_timeout
        self._cv = threading.Condition(self.lock)
        self._dirty = True  # the service thread connects as soon as it starts
        self._status = "connecting"
        self._attempt: ConnectAttempt | None = None
        self._error: BaseException | None = None
        self._cluster_workers = 0
        self._events_set: set[str] = set()  # cancel events, cleared when the pool closes

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` once connected (None while connecting or unreachable)."""
        return self._client if self._status == "ready" else None

    def _describe_target(self) -> str:
        return f"the Dask scheduler at {self._address}" if self._address else "its Dask client"

    def _notify_locked(self) -> None:
        self._dirty = True
        self._cv.notify()

    def _wake(self) -> None:
        with self._cv:
            self._notify_locked()

    def _subscribe(self, client: Any) -> None:
        """Listen to the events the tasks send (the pool's progress topic)."""
        raise NotImplementedError

    def _refuse_locked(self) -> None:
        if self._status == "unavailable":
            error = self._error
            self._status = "connecting"  # try again in the background
            self._notify_locked()
            raise ClusterUnavailableError(
                f"pool {self.name!r} cannot reach {self._describe_target()} ({error}); "
                "nothing was queued.  Start the scheduler and its workers (or check the "
                "address and the network), then submit again: the pool is reconnecting"
            )

    def _wait_for_work(self) -> None:
        with self._cv:
            while not self._dirty:
                self._cv.wait()
            self._dirty = False
            connect = self._status == "connecting" and not self._stopping
        if connect:
            self._connect()

    def _connect(self) -> None:
        client = self._client
        try:
            if client is None or (self._owns_client and client.status != "running"):
                if client is not None:
                    quietly(client.close, CALL_TIMEOUT)
                client = self._open_client()
                if client is None:  # stopped meanwhile, with nothing left to run
                    return
            elif client.status != "running":
                raise OSError(f"the client given to the pool is {client.status}")
            self._subscribe(client)
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
        attempt = self._attempt = ConnectAttempt(
            self.name, self._address, self._connect_timeout, self._wake
        )
        deadline = time.monotonic() + self._connect_timeout + CONNECT_GRACE
        timed_out = False
        with self._cv:
            while not attempt.done:
                if self._abort or (self._stopping and self._nothing_to_run_locked()):
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

    def _nothing_to_run_locked(self) -> bool:
        """Nothing in flight and every queued job's task has ended (lock held)."""
        raise NotImplementedError

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

    def _set_event(self, client: Any, name: str, *, keep: bool = False) -> None:
        """Set the ``distributed.Event`` ``name`` (a task's cancel flag on the cluster).

        With ``keep``, it is not cleared when the pool closes: the function it is for
        may not have looked yet, and clearing it would hide the cancellation.
        """
        if keep:
            self._events_set.discard(name)
        try:
            distributed.Event(name, client=client).set()
            if not keep:
                self._events_set.add(name)
        except Exception as exc:  # the scheduler is gone: nothing left to stop
            logger.debug("pool %r: could not set %s: %s", self.name, name, exc)

    def _close_client(self, topic: str) -> None:
        """The service thread ends: unsubscribe, free the events, close our own client."""
        client = self._client
        if client is None:
            return
        if client.status == "running":
            quietly(client.unsubscribe_topic, topic)
            for name in self._events_set:  # frees the scheduler's record of each
                quietly(distributed.Event(name, client=client).clear)
        if self._owns_client:
            quietly(client.close, CALL_TIMEOUT)


def quietly(fn: Any, *args: Any) -> None:
    """Call ``fn(*args)``; log (debug) instead of raising if Dask fails."""
    try:
        fn(*args)
    except Exception as exc:  # closing or cancelling against a scheduler that is gone
        logger.debug("dask call %r failed: %s", fn, exc)
