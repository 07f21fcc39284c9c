"""The asyncio bridge: await workers, cross threads safely, sync↔async without nested loops.

qasync runs asyncio on the Qt event loop, so on the GUI thread the delivery engine's
drain and the asyncio loop are the same thread and the same event loop.  ``await``
resolves the awaiting future straight from the drain::

     GUI thread (qasync loop = Qt event loop)          worker thread
     ----------------------------------------          -------------
     await handle ─► loop future, registered with
                     handle.when_delivered(...)
                                                       task settles ─► engine.post_item(task)
     engine drain (one posted event per batch) ◄──────────────┘
       the task's delivery: signals, continuations, then its when_delivered hooks:
       future.set_result(None)
       └► one call_soon: the coroutine resumes and reads the outcome off the handle

One posted event wakes the GUI for a whole burst of results (stock asyncio and qasync
pay a self-pipe write or a signal *per* result, and qasync then a timer for the
``call_soon`` and another for the task's wake-up).  On an asyncio loop in another thread
(a long job's own loop) the waiter uses ``loop.call_soon_threadsafe`` instead.

The rest of the package builds on that:

* :func:`asyncify` turns a blocking function into a coroutine function on a named pool;
  :class:`PoolExecutor` / :func:`attach_loop` make the manager's pool the loop's
  default executor (``asyncio.to_thread``, ``run_in_executor(None, ...)``).
* :func:`run_in_loop` (any thread → the GUI loop, a ``concurrent.futures.Future``) and
  :func:`run_coroutine_sync` (a worker thread blocks on a coroutine run on the GUI
  loop); both refuse to block a loop on itself (:class:`BlockingCallError`).
* :func:`async_slot`, :class:`TaskGroup`, :func:`wait_signal`, :func:`open_dialog`:
  coroutines that belong to widgets, are cancelled with them and never nest loops.

One module per concept, each depending only on those above it::

    _loops      which loop is which (the GUI thread's Qt loop is recognised by its class)
    _await      await a task handle or a long job (the drawing above)
    _mapiter    async for over a map: its results as their chunks finish
    _host       ExecutorHost: the few steps of a manager the executor needs (a protocol)
    _executor   PoolExecutor, attach_loop: a manager pool as a loop's default executor
    _asyncify   asyncify: a blocking function as a coroutine function on a pool
    _crossloop  run_in_loop, run_coroutine_sync: any thread → a loop, sync → async
    _owned      the asyncio tasks of an owner QObject, cancelled with it
    _slots      async_slot
    _taskgroup  TaskGroup
    _qtwait     wait_signal, open_dialog

The task handle, the map and the long job import ``_await``/``_mapiter`` only when
they are awaited or iterated: ``import casare_workers`` needs none of this.  Only
``asyncio`` is imported here; qasync is recognised by its class, never imported.
"""

from __future__ import annotations

from ._asyncify import asyncify
from ._crossloop import run_coroutine_sync, run_in_loop
from ._executor import PoolExecutor, attach_loop
from ._qtwait import open_dialog, wait_signal
from ._slots import async_slot
from ._taskgroup import TaskGroup

__all__ = (
    "PoolExecutor",
    "TaskGroup",
    "async_slot",
    "asyncify",
    "attach_loop",
    "open_dialog",
    "run_coroutine_sync",
    "run_in_loop",
    "wait_signal",
)
