"""Task functions for tests/test_reliability.py, run inside worker processes.

Kept apart from the test module so that a freshly spawned worker (the chaos test
restarts dozens) imports neither pytest nor hypothesis.
"""

from __future__ import annotations

import ctypes
import os
import time

#: Seconds a "victim" task waits to be killed before it gives up (a hang guard).
VICTIM_WAIT = 30.0


def chaos(index: int, fault: str, runs_file: str) -> int:
    """Record that task ``index`` runs, then do ``fault`` to the worker process or succeed.

    Every run first appends ``"<index> <pid> <fault>"`` to ``runs_file`` (one
    ``O_APPEND`` write, atomic for a line this short): the test proves from it that no
    task ran twice, and its killer learns from it which process a victim runs in.

    Faults: ``"ok"`` (2-5 ms of work, then the index), ``"exit"`` (``os._exit(7)``),
    ``"segfault"`` (a real SIGSEGV in native code), ``"victim"`` (wait to be killed
    from outside).
    """
    fd = os.open(runs_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{index} {os.getpid()} {fault}\n".encode())
    finally:
        os.close(fd)
    if fault == "exit":
        os._exit(7)
    if fault == "segfault":
        ctypes.string_at(0)
    if fault == "victim":
        deadline = time.monotonic() + VICTIM_WAIT
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return -1  # never killed: the test fails on this value instead of hanging
    time.sleep((2 + index % 4) / 1000)
    return index
