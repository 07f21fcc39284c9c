"""The machinery under the public API, for code that drives it directly.

Most applications never need these: ``WorkerManager``, the handles and the bridge use
them.  They are here for integrations (a custom event-loop bridge, a test harness):

* :class:`DeliveryEngine` / :func:`get_engine`: the queue that moves results, errors and
  progress to the GUI thread in batches, with its rescuer;
* :class:`GuiGarbageCollector`: the cyclic garbage collection that
  ``collect_garbage_on_gui_thread()`` runs on the GUI thread.

These names were importable from ``casare_workers`` itself; that still works, with a
``DeprecationWarning``.
"""

from __future__ import annotations

from ._engine import DeliveryEngine, get_engine
from ._gc import GuiGarbageCollector

__all__ = ("DeliveryEngine", "GuiGarbageCollector", "get_engine")

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
