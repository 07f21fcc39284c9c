"""Long jobs: work with a thread of its own, outside the pools.

Modules:

* ``_longjob``    ``LongJob``: a QThread for long work that never aborts the process
* ``_loopthread`` ``LoopThread``: one persistent thread with an asyncio loop and an
                  initializer
* ``_subprocess`` ``SubprocessJob`` / ``run_process``: commands streamed line by line,
                  tree kill
"""

from __future__ import annotations

__all__ = ()
