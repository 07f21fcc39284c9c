"""A bounded pool of daemon threads with priorities: the manager's thread pools.

Why not ``QThreadPool``: measured with PySide6 6.12, a ``QThreadPool`` whose runnable
is stuck (an OAuth wait, a hung OCR call) hangs the application's exit forever, because
PySide destroys every QObject wrapper at exit and ``~QThreadPool`` waits for its
runnables without a limit.  Daemon threads let a stuck function die with the process;
they also wake in ~30 µs against ~40 µs for ``QThreadPool.start`` and do not cross the
C++→Python boundary that PySide 6.12 mishandles on Python 3.11.  ``Worker`` is still a
``QRunnable`` and runs on any ``QThreadPool`` you hand it to.

Scheduling::

    submit ──► FIFO deque of its priority level
               ├► no worker busy and no wake-up in flight: wake an idle thread
               │  (or start one, below max_workers)
               └► workers busy: arm the monitor
    thread:  pop (highest level first) ► run ► pop ► ...  queue empty ► park on its own
             lock (LIFO) for idle_timeout seconds ► still idle ► exit
    monitor: while work is queued, if no worker popped anything for INJECT_DELAY, wake
             or start one more thread; then look again one INJECT_DELAY later

Why not wake a thread per submit: under the GIL, extra threads only help when the
running ones are blocked (I/O, sleeps, GIL-releasing C code).  Waking all of them for a
burst of short Python tasks makes them fight for the GIL with the GUI thread (measured:
8 threads were 2x slower per task than 1 and stalled the GUI timer 4x longer).  A thread
that keeps popping work proves the queue is being served; only a queue that stops
moving gets another thread, one per INJECT_DELAY (the "starvation detection" of .NET's
thread pool).  Blocking I/O tasks therefore ramp up to ``max_workers`` within a few
milliseconds, and short tasks run on as few threads as keep up.

Each parked thread waits on a private lock that is released with the pool lock held, so
a wake-up is never lost and never counted twice (``Condition.wait`` with a timeout can do
both).  Priorities are FIFO deques per level (O(1), no allocation per task) and a heap
of the levels that hold work: any number of distinct priorities costs O(log levels) per
task, and a level is dropped once drained (nothing is kept for the manager's lifetime).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._config import PoolConfig
from .._core._state import TaskState
from .._errors import BlockingCallError
from ._pool import TaskCounters, still_queued
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from .._core._handle import TaskHandle
    from ._map import MapHandle

__all__ = ("INJECT_DELAY", "PoolItem", "ThreadPool")

#: Seconds queued work may see no progress before the monitor adds a thread.
INJECT_DELAY = 0.001

logger = logging.getLogger("casare_workers")

_PENDING, _QUEUED = TaskState.PENDING, TaskState.QUEUED


class PoolItem(Protocol):
    """What a pool runs: a task, or one of a ``map``'s chunk runners."""

    def execute(self) -> None: ...

    @property
    def task(self) -> TaskHandle[Any]: ...


class ThreadPool(TaskCounters):
    """The thread pool behind a manager's ``"io"``, ``"cpu"`` and ``"background"`` pools.

    Internal: users reach it through ``WorkerManager``.  Thread-safe.
    """

    kind = "thread"

    def __init__(self, name: str, config: PoolConfig) -> None:
        self.name = name
        self.max_workers = config.max_workers
        self._idle_timeout = config.idle_timeout
        self.lock = threading.Lock()
        self._exited = threading.Condition(self.lock)
        # A FIFO per priority level that holds work (level 0's always exists: the hot
        # path), and a heap of those levels, negated so the highest comes first.  A
        # level is in the heap exactly while its FIFO is not empty.
        self._default: deque[PoolItem] = deque()
        self._queues: dict[int, deque[PoolItem]] = {0: self._default}
        self._levels: list[int] = []
        self._pending = 0  # items in all queues (tasks and map runners, live or cancelled)
        self._waking = False  # a wake-up (or a thread start) is in flight
        self._last_pop = 0.0
        self._monitor_cv = threading.Condition(self.lock)
        self._monitor: threading.Thread | None = None
        self._monitor_armed = False
        self._idle: list[threading.Lock] = []
        self._threads: set[threading.Thread] = set()
        self._current: dict[int, PoolItem] = {}
        self._self_waits = 0  # worker threads blocked in wait() on a task of this pool
        self._nthreads = 0
        self._thread_seq = itertools.count(1)
        self._closed = False
        # Tasks submitted without the lock while every thread was busy (see submit):
        # taken into the queues, and counted, by whoever holds the lock next.
        self._inbox: deque[tuple[TaskHandle[Any], int]] = deque()

    # -- submitting -------------------------------------------------------------------

    def submit(self, task: TaskHandle[Any], priority: int) -> None:
        """Queue ``task`` (already bound to this pool's lock) to run at ``priority``.

        When the lock is taken and every thread the pool may have is running a task,
        the task goes into the inbox instead, without waiting for the lock: a thread
        that blocks on a lock a running worker holds is handed the lock but not the GIL,
        and runs again only when that worker next blocks (``bench_submit_lock.py``
        measured 36-56 % of the GUI thread's submit time lost so).  The inbox is taken
        into the queues by the next holder of the lock (a worker coming back for work,
        a statistics or queue snapshot, the next submit) in submission order; until
        then the task reads PENDING.  Nothing is lost in between: the busy check is made
        again after queueing in the inbox, and a thread about to park or exit looks at
        the inbox after announcing it (each side sees the other's write).
        """
        lock = self.lock
        if not lock.acquire(False):
            if self._saturated():
                self._inbox.append((task, priority))
                if self._saturated():
                    return
                with lock:  # a thread parked or exited meanwhile: take the inbox now
                    self._absorb()
                    spawn = self._schedule() if self._pending else False
                if spawn:
                    self._spawn()
                return
            lock.acquire()
        try:
            if self._inbox:
                self._absorb()  # earlier submits first
            self.register_locked(task)
            self._enqueue(task, priority)
            spawn = self._schedule()
        finally:
            lock.release()
        if spawn:
            self._spawn()

    def _saturated(self) -> bool:
        # Without the lock: a hint, which submit checks again after using the inbox.
        # Every thread the pool may have exists and is running an item.
        n = self._nthreads
        return (
            n == self.max_workers
            and len(self._current) == n
            and not self._idle
            and not self._waking
            and self._accepting
        )

    def _enqueue(self, item: PoolItem, priority: int) -> None:
        # Called with the lock held.
        self._queue_for(priority).append(item)
        self._pending += 1

    def _absorb(self) -> None:
        """Queue and count the inbox's tasks, oldest first (called with the lock held)."""
        inbox = self._inbox
        while inbox:
            task, priority = inbox.popleft()
            self.count_submitted()
            if task.state is _PENDING:
                task.mark_queued()
                self._enqueue(task, priority)
            else:  # cancelled while in the inbox (never counted as queued): count it
                self.count_settled(_QUEUED, task.state)

    def push_items(self, items: Sequence[PoolItem], priority: int) -> None:
        """Queue internal items (a map's chunk runners) without counting them as tasks."""
        if not items:
            return
        with self.lock:
            self._absorb()
            self._queue_for(priority).extend(items)
            self._pending += len(items)
            spawn = self._schedule()
        if spawn:
            self._spawn()

    def _schedule(self) -> bool:
        # Called with the lock held after queueing; True: the caller starts a thread.
        if self._waking:
            return False
        if not self._current:
            return self._wake_or_grow()
        if not self._monitor_armed:
            self._arm_monitor()
        return False

    def _arm_monitor(self) -> None:
        # Called with the lock held: work is queued behind busy workers.
        self._monitor_armed = True
        if self._monitor is None:
            self._monitor = threading.Thread(
                target=self._watch, name=f"casare-{self.name}-monitor", daemon=True
            )
            self._monitor.start()
        else:
            self._monitor_cv.notify()

    def _queue_for(self, priority: int) -> deque[PoolItem]:
        # Called with the lock held; the caller queues work in it at once (so a level is
        # in the heap exactly while its FIFO holds work).  Level 0's FIFO always exists.
        queue = self._default if priority == 0 else self._queues.get(priority)
        if queue is None:
            queue = self._queues[priority] = deque()
        if not queue:
            heapq.heappush(self._levels, -priority)
        return queue

    def _pop(self) -> PoolItem:
        # Called with the lock held and self._pending > 0: the highest level's oldest.
        self._pending -= 1
        levels = self._levels
        level = -levels[0]
        queue = self._queues[level]
        item = queue.popleft()
        if not queue:  # drained: the level goes (level 0's FIFO stays, for the hot path)
            heapq.heappop(levels)
            if level:
                del self._queues[level]
                if len(self._queues) == 1:  # a dict never shrinks: let a big one go
                    self._queues = {0: self._default}
        return item

    def priority_levels(self) -> int:
        """How many priority levels hold queued work now (for tests and diagnostics)."""
        with self.lock:
            self._absorb()
            return len(self._levels)

    def submit_map(self, task: MapHandle[Any], priority: int) -> None:
        """Count a map as one task and queue its chunk runners (one per thread it may use)."""
        self.register(task)
        self.push_items(task.runners(self.max_workers), priority)

    def on_cancel(self, task: TaskHandle[Any], was_running: bool) -> None:
        """Nothing to do: a queued task is skipped when popped; a thread cannot be stopped."""

    def wait_from_worker(self, task: TaskHandle[Any], done: threading.Event) -> bool:
        """Block until ``task`` (one of this pool's) ends; refuse a certain deadlock.

        Called by ``TaskHandle.wait()`` with no timeout.  When every thread the pool
        may have is one of its own workers blocked like this, the tasks they wait for
        can only run on those threads: nothing can ever end.  The last thread to
        block gets :class:`BlockingCallError` instead (its task fails, its thread runs
        the queued work and the others go on), as the GUI thread does for a wait that
        would freeze it.  Waits from other threads, or with a timeout, are not counted.

        Returns:
            True once the task has ended.
        """
        with self.lock:
            counted = threading.get_ident() in self._current and not task.done()
            if counted:
                if self._self_waits + 1 >= self.max_workers:
                    raise BlockingCallError(
                        f"waiting for task {task.name!r} would never end: every thread "
                        f"of pool {self.name!r} ({self.max_workers}) would be blocked "
                        "waiting for a task of the same pool, which only those threads "
                        "can run.  Run the inner work on another pool "
                        "(manager.options(pool=...)), chain it with then(), or wait "
                        "with a timeout"
                    )
                self._self_waits += 1
        if not counted:
            return done.wait()
        try:
            return done.wait()
        finally:
            with self.lock:
                self._self_waits -= 1

    def still_running(self) -> list[str]:
        """Names of the functions the threads are executing now."""
        with self.lock:
            return [item.task.name for item in self._current.values()]

    def register(self, task: TaskHandle[Any]) -> None:
        """Count a task that runs on this pool's threads through ``push_items``."""
        with self.lock:
            self.register_locked(task)

    def _wake_or_grow(self) -> bool:
        # Called with the lock held; returns True if the caller must start a thread.
        if self._idle:
            self._waking = True
            self._idle.pop().release()
            return False
        if self._nthreads < self.max_workers:
            self._waking = True
            self._nthreads += 1
            return True
        return False

    def _spawn(self) -> None:
        thread = threading.Thread(
            target=self._work,
            name=f"casare-{self.name}-{next(self._thread_seq)}",
            daemon=True,
        )
        with self.lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # the OS refused another thread
            with self.lock:
                self._threads.discard(thread)
                self._nthreads -= 1
                self._waking = False
                stranded = self._nthreads == 0 and bool(self._pending)
            logger.exception("pool %r could not start a worker thread", self.name)
            if stranded:
                raise

    # -- the worker thread --------------------------------------------------------------

    def _work(self) -> None:
        wake = threading.Lock()
        wake.acquire()
        lock = self.lock
        current = self._current
        clock = time.perf_counter
        ident = threading.get_ident()
        woken = True  # a new thread starts as the wake-up in flight
        try:
            while True:
                lock.acquire()
                if woken:
                    self._waking = False
                    woken = False
                if self._inbox:
                    self._absorb()
                if self._pending:
                    item = self._pop()
                    current[ident] = item
                    self._last_pop = clock()
                    if self._pending and not self._monitor_armed:
                        self._arm_monitor()
                    lock.release()
                    try:
                        item.execute()
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
                # Parked (announced in _idle) before looking at the inbox: a submit that
                # used the inbox without seeing this thread parked is seen here.
                if self._inbox and self._unpark(wake):
                    continue
                woken = True
                if wake.acquire(timeout=self._idle_timeout):
                    continue
                with lock:
                    if wake in self._idle:  # nobody woke us: expire
                        self._idle.remove(wake)
                        if not self._inbox:
                            return
                        woken = False
                        continue
                # A submitter popped our lock and released it concurrently: consume it.
                wake.acquire()
        finally:
            with lock:
                self._nthreads -= 1
                self._threads.discard(threading.current_thread())
                self._exited.notify_all()

    def _unpark(self, wake: threading.Lock) -> bool:
        """Leave the idle list again (the inbox got work); False if already woken."""
        with self.lock:
            if wake in self._idle:
                self._idle.remove(wake)
                return True
        return False

    def _watch(self) -> None:
        """The monitor thread: adds a worker when queued work stops moving."""
        cv = self._monitor_cv
        clock = time.perf_counter
        with cv:
            while not self._closed:
                if not self._pending or not self._monitor_armed:
                    self._monitor_armed = False
                    cv.wait()
                    continue
                now = clock()
                due = self._last_pop + INJECT_DELAY
                if now < due:
                    cv.wait(due - now)
                    continue
                self._last_pop = now  # the next injection waits a full interval
                if self._waking or not (self._idle or self._nthreads < self.max_workers):
                    cv.wait(INJECT_DELAY)
                    continue
                if self._wake_or_grow():
                    cv.release()
                    try:
                        self._spawn()
                    finally:
                        cv.acquire()

    # -- observing --------------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """Return a consistent snapshot of the counters."""
        with self.lock:
            self._absorb()
            abandoned = sum(1 for item in self._current.values() if item.task.done())
            return PoolStatistics(
                name=self.name,
                kind=self.kind,
                max_workers=self.max_workers,
                workers=self._nthreads,
                busy=len(self._current),
                abandoned=abandoned,
                **self.counters(),
            )

    # -- shutdown -----------------------------------------------------------------------

    def queued_tasks(self) -> list[TaskHandle[Any]]:
        """Return the tasks still waiting in the queue (a snapshot)."""
        with self.lock:
            self._absorb()
            return still_queued(
                item.task
                for level in sorted(self._queues, reverse=True)
                for item in self._queues[level]
            )

    def stop(self) -> None:
        """Let every thread exit once the queue is empty (idle ones exit now)."""
        with self.lock:
            self._absorb()
            self._accepting = False
            self._closed = True
            while self._idle:
                self._idle.pop().release()
            self._monitor_cv.notify()

    def join(self, deadline: float) -> bool:
        """Wait until every thread has exited or ``time.monotonic()`` passes ``deadline``."""
        with self.lock:
            while self._nthreads:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._exited.wait(remaining)
            return True

    def threads(self) -> list[threading.Thread]:
        """The pool's live threads (for leak checks in tests)."""
        with self.lock:
            return list(self._threads)
