"""The task core: one unit of work, from submit to its single outcome, and its delivery.

Modules, bottom up:

* ``_state``      ``TaskState``: where a task or a long job is in its life
* ``_failure``    ``TaskFailure`` (alias ``TaskError``): an exception and its traceback text
* ``_outcome``    ``Outcome``: the "settle exactly once" core that tasks and long jobs share
                  (state, result or exception, a ``Future`` view, done callbacks, the cancel
                  request and its event, blocking access); testable without threads
* ``_host``       what a task needs from its pool and its manager, as small protocols
* ``_call``       ``Call``: what to run (function, arguments, how to pass ``ctx``), and
                  the rules for releasing it
* ``_context``    ``TaskContext``: what a running function sees (progress, status,
                  cancellation); the one contract thread, process and Dask tasks share
* ``_delivery``   the GUI-thread half of a task: signals, continuations, awaiters
* ``_handle``     ``TaskHandle``: the public handle, and the narrow interface pools drive
                  a task through (``begin``, ``succeed``, ``fail``, ``report_progress``)

Nothing here imports a pool, the manager, long jobs or the asyncio bridge: they build on
the core, and reach the core only through ``TaskHandle``'s named interface.
"""

from __future__ import annotations

__all__ = ()
