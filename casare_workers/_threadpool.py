"""A bounded pool of daemon threads with priorities: the manager's thread pools.

Why not ``QThreadPool``: measured with PySide6 6.12, a ``QThreadPool`` whose runnable
is stuck (an OAuth wait, a hung OCR call) hangs the application's exit forever, because
PySide destroys every QObject wrapper at exit and ``~QThreadPool`` waits for its
runnables without a limit.  Daemon threads let a stuck function die with the process;
they also wake in ~30 µs against ~40 µs for ``QThreadPool.start`` and do not cross the
C++→Python boundary that PySide 6.12 mishandles on Python 3.11.  ``Worker`` is still a
``QRunnable`` and runs on any ``QThreadPool`` you hand it to.

Scheduling::

    submit ──► heap (-priority, seq, item) ──► idle thread? release its wake lock
                                            └► below max_workers? start a thread
    thread: pop ► run ► pop ► ...  heap empty ► park on its own lock (LIFO) for
            idle_timeout seconds ► still idle ► exit

Each parked thread waits on a private lock that the submitter releases while holding the
pool lock, so a wake-up is never lost and never counted twice (``Condition.wait`` with a
timeout can do both).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._config import PoolConfig
from ._errors import ManagerShutdownError
from ._state import TaskState

if TYPE_CHECKING:
    from ._task import TaskHandle

__all__ = ("PoolStatistics", "ThreadPool")

logger = logging.getLogger("casare_workers")


class PoolItem(Protocol):
    """What a pool runs: a task, or one of a ``map``'s chunk runners."""

    def _pool_run(self) -> None: ...

    @property
    def _task(self) -> TaskHandle[Any]: ...


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A consistent snapshot of one pool's counters.

    ``submitted == queued + running + succeeded + failed + cancelled`` always holds.

    Attributes:
        name: The pool's name.
        kind: ``"thread"`` (or the kind of another backend).
        max_workers: The bound on workers running at once.
        workers: Threads alive now (idle ones exit after ``idle_timeout``).
        busy: Workers executing a function now.
        abandoned: Workers still executing a function whose task already ended
            (cancelled or timed out while running; Python threads cannot be killed).
        queued: Tasks waiting for a worker.
        running: Tasks running now.
        submitted: Tasks ever submitted.
        succeeded: Tasks that ended with a result.
        failed: Tasks that ended with an exception (including timeouts).
        cancelled: Tasks cancelled, superseded or shut down.
        throughput: Tasks ended per second over the last few seconds.
    """

    name: str
    kind: str
    max_workers: int
    workers: int
    busy: int
    abandoned: int
    queued: int
    running: int
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    throughput: float = 0.0

    @property
    def finished(self) -> int:
        """Tasks that ended in any way."""
        return self.succeeded + self.failed + self.cancelled


class ThreadPool:
    """The thread pool behind a manager's ``"io"``, ``"cpu"`` and ``"background"`` pools.

    Internal: users reach it through ``WorkerManager``.  Thread-safe.
    """

    kind = "thread"

    def __init__(self, name: str, config: PoolConfig) -> None:
        self.name = name
        self.max_workers = config.max_workers
        self._idle_timeout = config.idle_timeout
        self._lock = threading.Lock()
        self._exited = threading.Condition(self._lock)
        self._heap: list[tuple[int, int, PoolItem]] = []
        self._seq = itertools.count()
        self._idle: list[threading.Lock] = []
        self._threads: set[threading.Thread] = set()
        self._current: dict[int, PoolItem] = {}
        self._nthreads = 0
        self._thread_seq = itertools.count(1)
        self._accepting = True
        self._closed = False
        self._queued = 0
        self._running = 0
        self._submitted = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0

    # -- submitting -------------------------------------------------------------------

    def submit(self, task: TaskHandle[Any], priority: int) -> None:
        """Queue ``task`` (already bound to this pool's lock) to run at ``priority``."""
        with self._lock:
            if not self._accepting:
                raise ManagerShutdownError(
                    f"pool {self.name!r} is shut down; create a new WorkerManager to run more work"
                )
            task._state = TaskState.QUEUED
            self._queued += 1
            self._submitted += 1
            heapq.heappush(self._heap, (-priority, next(self._seq), task))
            spawn = self._wake_or_grow()
        if spawn:
            self._spawn()

    def push_items(self, items: list[PoolItem], priority: int) -> None:
        """Queue internal items (a map's chunk runners) without counting them as tasks."""
        spawn = 0
        with self._lock:
            for item in items:
                heapq.heappush(self._heap, (-priority, next(self._seq), item))
                spawn += self._wake_or_grow()
        for _ in range(spawn):
            self._spawn()

    def register(self, task: TaskHandle[Any]) -> None:
        """Count a task that runs on this pool's threads through ``push_items``."""
        with self._lock:
            if not self._accepting:
                raise ManagerShutdownError(
                    f"pool {self.name!r} is shut down; create a new WorkerManager to run more work"
                )
            task._state = TaskState.QUEUED
            self._queued += 1
            self._submitted += 1

    def _wake_or_grow(self) -> bool:
        # Called with the lock held.
        if self._idle:
            self._idle.pop().release()
            return False
        if self._nthreads < self.max_workers:
            self._nthreads += 1
            return True
        return False

    def _spawn(self) -> None:
        thread = threading.Thread(
            target=self._work,
            name=f"casare-{self.name}-{next(self._thread_seq)}",
            daemon=True,
        )
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # the OS refused another thread
            with self._lock:
                self._threads.discard(thread)
                self._nthreads -= 1
                stranded = self._nthreads == 0 and bool(self._heap)
            logger.exception("pool %r could not start a worker thread", self.name)
            if stranded:
                raise

    # -- the worker thread --------------------------------------------------------------

    def _work(self) -> None:
        wake = threading.Lock()
        wake.acquire()
        lock = self._lock
        heap = self._heap
        current = self._current
        ident = threading.get_ident()
        try:
            while True:
                lock.acquire()
                if heap:
                    item = heapq.heappop(heap)[2]
                    current[ident] = item
                    lock.release()
                    try:
                        item._pool_run()
                    except BaseException:  # a bug of ours: keep the thread serving
                        logger.exception("pool %r: internal error running %r", self.name, item)
                    with lock:
                        del current[ident]
                    del item
                    continue
                if self._closed:
                    lock.release()
                    return
                self._idle.append(wake)
                lock.release()
                if wake.acquire(timeout=self._idle_timeout):
                    continue
                with lock:
                    if wake in self._idle:  # nobody woke us: expire
                        self._idle.remove(wake)
                        return
                # A submitter popped our lock and released it concurrently: consume it.
                wake.acquire()
        finally:
            with lock:
                self._nthreads -= 1
                self._threads.discard(threading.current_thread())
                self._exited.notify_all()

    # -- accounting (called with the lock held, from TaskHandle._settle) -----------------

    def _count_settled(self, previous: TaskState, state: TaskState) -> None:
        if previous is TaskState.QUEUED:
            self._queued -= 1
        elif previous is TaskState.RUNNING:
            self._running -= 1
        else:
            return  # a PENDING task was never counted
        if state is TaskState.SUCCEEDED:
            self._succeeded += 1
        elif state is TaskState.FAILED:
            self._failed += 1
        else:
            self._cancelled += 1

    def statistics(self) -> PoolStatistics:
        """Return a consistent snapshot of the counters."""
        with self._lock:
            abandoned = sum(1 for item in self._current.values() if item._task.done())
            return PoolStatistics(
                name=self.name,
                kind=self.kind,
                max_workers=self.max_workers,
                workers=self._nthreads,
                busy=len(self._current),
                abandoned=abandoned,
                queued=self._queued,
                running=self._running,
                submitted=self._submitted,
                succeeded=self._succeeded,
                failed=self._failed,
                cancelled=self._cancelled,
            )

    # -- shutdown -----------------------------------------------------------------------

    def queued_tasks(self) -> list[TaskHandle[Any]]:
        """Return the tasks still waiting in the queue (a snapshot)."""
        with self._lock:
            seen: dict[int, TaskHandle[Any]] = {}
            for _, _, item in self._heap:
                task = item._task
                if task._state is TaskState.QUEUED:
                    seen[task.id] = task
            return list(seen.values())

    def close(self) -> None:
        """Refuse new work; queued work still runs."""
        with self._lock:
            self._accepting = False

    def stop_threads(self) -> None:
        """Let every thread exit once the queue is empty (idle ones exit now)."""
        with self._lock:
            self._accepting = False
            self._closed = True
            while self._idle:
                self._idle.pop().release()

    def join(self, deadline: float) -> bool:
        """Wait until every thread has exited or ``time.monotonic()`` passes ``deadline``."""
        with self._lock:
            while self._nthreads:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._exited.wait(remaining)
            return True

    def threads(self) -> list[threading.Thread]:
        """The pool's live threads (for leak checks in tests)."""
        with self._lock:
            return list(self._threads)
