"""Task functions for tests/test_daskpool.py, run on the Dask workers.

Kept apart from the test module so that a worker importing them does not import
pytest, pytest-qt or Qt.  Functions that report back to the test through module state
(``seen``) only work on the threads cluster, whose workers live in the test process.
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: Set by tasks on the threads cluster (same process as the test).
seen: dict[str, threading.Event] = {"cancel_observed": threading.Event()}


def square(x: int) -> int:
    return x * x


def worker_address() -> str:
    from distributed import get_worker

    return str(get_worker().address)


def raise_value_error(text: str) -> None:
    raise ValueError(text)


def count_to(n: int, ctx: Any) -> int:
    for i in range(n):
        ctx.progress(i + 1, n)
    ctx.status("counted")
    return n


def wait_for_cancel(ctx: Any) -> bool:
    ctx.status("waiting")
    cancelled = bool(ctx.wait(30))
    if cancelled:
        seen["cancel_observed"].set()
    return cancelled


def die_once(marker: str) -> str:
    """Kill this worker process the first time; succeed when Dask re-runs it elsewhere."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(1)
    return "survived"


def always_die() -> None:
    os._exit(1)
