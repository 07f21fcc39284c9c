"""A task function for tests/test_context_contract.py, run on a thread, in a long job, in a
worker process and on a Dask worker.

Kept free of pytest and Qt so that worker processes import it quickly.  It reports what
its ``ctx`` said through a JSON file, since a cancelled task's result is discarded.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: Seconds the function waits for its cancellation: far longer than the test's own
#: waits, so a ``ctx.wait`` that did not wake on cancel fails the test.
WAIT = 120.0


def report_cancellation(path: str, ctx: Any) -> str:
    """Wait until cancelled, then write what ``ctx`` answered before and after to ``path``."""
    report: dict[str, Any] = {
        "before": {"cancelled": ctx.cancelled, "wait(0)": ctx.wait(0), "wait(-1)": ctx.wait(-1)},
        "task_id": ctx.task_id,
        "name": ctx.name,
    }
    try:
        ctx.progress("seven")
    except TypeError as exc:
        report["bad progress"] = str(exc)
    ctx.progress(1, 2)
    ctx.status("waiting")
    woke = ctx.wait(WAIT)  # returns True as soon as the task is cancelled
    after: dict[str, Any] = {"woke": woke, "cancelled": ctx.cancelled, "wait": ctx.wait(WAIT)}
    try:
        ctx.raise_if_cancelled()
    except BaseException as exc:
        after["raised"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        after["message"] = str(exc)
    report["after"] = after
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(report, out)
    os.replace(partial, path)  # the test never reads half a report
    return "not cancelled"
