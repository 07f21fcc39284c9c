"""Task functions for tests/test_processpool.py, run inside the worker processes.

Kept apart from the test module so that a worker importing them does not import
pytest and pytest-qt (a third of a second per spawned process).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import threading
from typing import Any

from PySide6.QtCore import QCoreApplication

from casare_workers import TaskContext, Worker, asyncify

#: Seconds a task waits for a cancellation before giving up (a hang guard).
WAIT = 30.0


def child_facts() -> tuple[int, bool, int]:
    """The worker's pid, whether it inherited a QCoreApplication (it must not), its nice."""
    return os.getpid(), QCoreApplication.instance() is not None, os.nice(0)


def square(x: int) -> int:
    return x * x


def raise_value_error(text: str) -> None:
    raise ValueError(text)


def count_to(n: int, ctx: TaskContext) -> int:
    for i in range(n):
        ctx.progress(i + 1, n)
    ctx.status("counted")
    return n


def tutorial_style(progress_callback: Any) -> str:
    progress_callback.emit(50)
    return "ok"


def wait_for_file(path: str, ctx: TaskContext) -> int:
    """Report the pid, then wait until ``path`` exists; return the pid."""
    ctx.status(f"pid {os.getpid()}")
    while not os.path.exists(path):
        if ctx.wait(0.01):
            return -1
    return os.getpid()


def wait_for_cancel(ctx: TaskContext) -> bool:
    ctx.status(f"pid {os.getpid()}")
    return ctx.wait(WAIT)


def ignore_cancel(ctx: TaskContext) -> None:
    """A task that never looks at ctx: only killing its process stops it."""
    ctx.status(f"pid {os.getpid()}")
    threading.Event().wait()


def exit_abruptly() -> None:
    os._exit(3)


def segfault() -> None:
    ctypes.string_at(0)


def return_a_lock() -> object:
    return threading.Lock()


class NeedsTwoArgs(Exception):
    """An exception whose pickled form cannot be rebuilt (a classic)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def raise_unrebuildable() -> None:
    raise NeedsTwoArgs(1, 2)


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise KeyError(x)
    return x


def wait_for_path_item(path: str) -> str:
    while not os.path.exists(path):
        threading.Event().wait(0.01)
    return path


def pid_of(_: object) -> int:
    return os.getpid()


class SquareWorker(Worker[int]):
    def work(self) -> int:
        return 4


def exit_on_five(x: int) -> int:
    if x == 5:
        os._exit(5)
    return x


def leave_a_thread_running() -> int:
    """Start a non-daemon thread that never ends: this process can no longer exit by itself."""
    threading.Thread(target=threading.Event().wait, name="left-behind").start()
    return os.getpid()


# -- hostile pickling: objects whose (un)pickling fails, exits or crashes ---------------------


def _raise(exc_type: type[BaseException]) -> None:
    raise exc_type("raised while unpickling")


class Unpickles:
    """Pickles fine; *rebuilding* it raises ``exc_type``, or crashes when ``exc_type`` is None."""

    def __init__(self, exc_type: type[BaseException] | None) -> None:
        self.exc_type = exc_type

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.exc_type is None:
            return ctypes.string_at, (0,)  # a segfault, in whichever process loads it
        return _raise, (self.exc_type,)


class Pickles:
    """Pickling it raises ``exc_type``, or crashes the process when ``exc_type`` is None."""

    def __init__(self, exc_type: type[BaseException] | None) -> None:
        self.exc_type = exc_type

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.exc_type is None:
            ctypes.string_at(0)
        raise (self.exc_type or RuntimeError)("raised while pickling")


def identity(value: object) -> object:
    return value


def return_unpickles(exc_type: type[BaseException] | None) -> Unpickles:
    return Unpickles(exc_type)


def return_pickles(exc_type: type[BaseException] | None) -> Pickles:
    return Pickles(exc_type)


# -- worker start-up, held or broken by the tests ------------------------------------------


def gated_initialize(gate_dir: str, *args: Any) -> None:
    """Stand in for the worker's initializer: say it is starting, wait for "go", go on.

    Installed by a test in place of ``casare_workers._pools._processworker.initialize``, so the
    worker process's start-up lasts exactly as long as the test wants.
    """
    from casare_workers._pools import _processworker

    with open(os.path.join(gate_dir, f"starting-{os.getpid()}"), "w"):
        pass
    go = os.path.join(gate_dir, "go")
    deadline = WAIT
    while not os.path.exists(go) and deadline > 0:  # a cross-process gate, hang-guarded
        threading.Event().wait(0.01)
        deadline -= 0.01
    _processworker.initialize(*args)


def failing_initialize(*args: Any) -> None:
    """Stand in for the worker's initializer: the process dies starting up."""
    os._exit(1)


def killed_initialize(*args: Any) -> None:
    """Stand in for the worker's initializer: the process is killed (SIGKILL) starting up."""
    os.kill(os.getpid(), signal.SIGKILL)


def logged(fn: Any) -> Any:
    """A decorator as users write them: ``functools.wraps`` over ``(*args, **kwargs)``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@logged
def decorated_count_to(n: int, ctx: TaskContext) -> int:
    ctx.progress(n, n)
    return n


@asyncify(pool="proc")
def asyncified_square(x: int, *, ctx: TaskContext | None = None) -> tuple[int, bool]:
    """Decorated in place, as asyncio.md shows: this module's name now holds the wrapper."""
    if ctx is not None:
        ctx.progress(1, 1)
    return x * x, ctx is not None
