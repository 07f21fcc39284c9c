"""Long jobs: work with a thread of its own, outside the pools.

Above the manager: these modules import it (``_host`` names what a job needs from it),
it imports none of them.  Modules, bottom up:

* ``_delivery``   ``JobDelivery``: a job's coalesced progress and its outcome, delivered
                  on the GUI thread through the job's signals
* ``_jobcore``    ``JobCore``: a job's state machine on the shared ``Outcome`` (start
                  claim, cancel, pause, point of no return, the job's asyncio loop)
* ``_context``    ``JobContext``: the ``ctx`` a job's work receives (a ``TaskContext``
                  with pause checkpoints)
* ``_work``       ``JobWork``: what a job runs, checked at construction
* ``_parking``    a running job's C++ object is owned by Qt, so nobody deletes it
* ``_host``       ``JobHost``: what a job needs from its ``WorkerManager``
* ``_registry``   ``JobRegistry``: a manager's live jobs, supersede keys, statistics (the
                  manager's ``JobTracker``)
* ``_jobthread``  ``JobThread``: the ``QThread`` machinery under ``LongJob``
* ``_longjob``    ``LongJob``: a QThread for long work that never aborts the process
* ``_loopserver`` ``LoopServer``: a ``LoopThread``'s calls and the thread serving them
* ``_loopthread`` ``LoopThread``: one persistent thread with an asyncio loop and an
                  initializer
* ``_lines``      output lines: from a child's pipes to ``on_line``
* ``_process``    ``run_process``: a command streamed line by line, its tree stopped
* ``_subprocess`` ``SubprocessJob``: ``run_process`` as a long job, lines emitted on the
                  GUI thread
"""

from __future__ import annotations

__all__ = ()
