"""Watching OS processes from tests: is a pid still running, wait for one to end."""

from __future__ import annotations

import os
import select


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited process that nobody reaped yet counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped meanwhile (read gives ESRCH)
        return False


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to end, woken by the kernel (a pidfd), not by polling.

    Returns:
        True if it has ended.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return not pid_alive(pid)
