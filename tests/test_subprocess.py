from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog, QPlainTextEdit

from casare_workers import (
    ConfigurationError,
    LongJob,
    ProcessResult,
    SubprocessJob,
    TaskError,
    TaskState,
    WorkerManager,
    run_process,
)
from casare_workers._jobs._lines import MAX_LINE, LineSplitter
from casare_workers.pytest_plugin import assert_gui_thread
from tests.processes import wait_dead

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and groups")

PY = sys.executable


def child(code: str) -> list[str]:
    """A Python child running ``code`` unbuffered (every print is a line at once)."""
    return [PY, "-u", "-c", code]


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Process groups to kill at teardown if a test failed half-way: none may survive."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


class LineSink(QObject):
    """Collects a SubprocessJob's lines and outcome in order (GUI-thread slots)."""

    def __init__(self, job: SubprocessJob) -> None:
        super().__init__()
        self.events: list[Any] = []
        job.line.connect(self.on_line)
        job.result.connect(self.on_result)
        job.error.connect(self.on_error)
        job.cancelled.connect(self.on_cancelled)

    @Slot(str, str)
    def on_line(self, text: str, stream: str) -> None:
        assert_gui_thread()
        self.events.append((stream, text))

    @Slot(object)
    def on_result(self, result: object) -> None:
        self.events.append(("result", result))

    @Slot(object)
    def on_error(self, error: object) -> None:
        self.events.append(("error", error))

    @Slot()
    def on_cancelled(self) -> None:
        self.events.append(("cancelled", None))

    def lines(self) -> list[str]:
        return [text for kind, text in self.events if kind in ("stdout", "stderr")]


def pid_of(job: SubprocessJob) -> int | None:
    return job.pid  # through a function: mypy would keep an asserted None narrowed


def run_to_end(qtbot: Any, manager: WorkerManager, job: LongJob[Any]) -> None:
    qtbot.waitUntil(lambda: job.isFinished() and job not in manager.live_jobs(), timeout=20_000)


# -- run_process -------------------------------------------------------------------------


def test_run_process_streams_lines_in_order_with_exit_code_and_tail() -> None:
    lines: list[tuple[str, str]] = []
    code = (
        "import sys\n"
        "for i in range(5): print(f'line {i}')\n"
        "print('oops', file=sys.stderr)\n"
        "sys.exit(3)"
    )
    result = asyncio.run(
        run_process(child(code), on_line=lambda t, s: lines.append((s, t)), tail_lines=3)
    )
    assert lines == [("stdout", f"line {i}") for i in range(5)] + [("stdout", "oops")]
    assert result.returncode == 3
    assert not result.ok
    assert result.output_tail == ("line 3", "line 4", "oops")
    assert result.stderr_tail == ()  # merged: stderr cannot be told apart
    assert result.timed_out is False
    assert result.command[0] == PY


def test_run_process_keeps_streams_apart_on_request() -> None:
    lines: list[tuple[str, str]] = []
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)"
    result = asyncio.run(
        run_process(child(code), on_line=lambda t, s: lines.append((s, t)), merge_stderr=False)
    )
    assert sorted(lines) == [("stderr", "err"), ("stdout", "out")]
    assert result.stderr_tail == ("err",)
    assert result.ok


def test_run_process_decodes_carriage_returns_and_bad_bytes() -> None:
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b'10%\\r50%\\r100%\\r\\n'); sys.stdout.flush()\n"
        "w(b'caf\\xc3'); sys.stdout.flush()\n"  # a UTF-8 sequence split across writes
        "w(b'\\xa9 \\xff end\\n')"
    )
    lines: list[str] = []
    asyncio.run(run_process(child(code), on_line=lambda t, s: lines.append(t)))
    assert lines == ["10%", "50%", "100%", "café \ufffd end"]


def test_line_splitter_joins_a_crlf_split_across_reads_and_cuts_huge_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed("a\r") == ["a"]
    assert splitter.feed("\nb\n") == ["b"]  # the \n completing \r\n is not an empty line
    assert splitter.feed("c") == []
    assert splitter.flush() == ["c"]
    huge = splitter.feed("x" * (2 * MAX_LINE + 5))
    assert huge == ["x" * MAX_LINE, "x" * MAX_LINE]
    assert splitter.flush() == ["x" * 5]


def test_run_process_missing_program_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_process(["/nonexistent/casare-installer", "--help"]))


def test_run_process_bad_arguments_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="single string is not split"):
        asyncio.run(run_process("python -m pip install"))
    with pytest.raises(TypeError, match="non-empty"):
        asyncio.run(run_process([]))
    with pytest.raises(ConfigurationError, match="timeout"):
        asyncio.run(run_process([PY], timeout=0))
    with pytest.raises(ConfigurationError, match="tail_lines"):
        asyncio.run(run_process([PY], tail_lines=-1))
    with pytest.raises(LookupError):
        asyncio.run(run_process([PY], encoding="no-such-codec"))


def test_run_process_on_line_errors_are_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_slot(text: str, stream: str) -> None:
        raise RuntimeError(f"slot broke on {text}")

    with caplog.at_level(logging.ERROR, logger="casare_workers"):
        result = asyncio.run(run_process(child("print(1); print(2)"), on_line=bad_slot))
    assert result.ok
    assert result.output_tail == ("1", "2")
    assert "on_line" in caplog.text


def test_run_process_on_line_may_take_the_text_alone(qasync_loop: Any) -> None:
    # The docs' own example: on_line=log.appendPlainText (a Qt method: no signature to
    # read) used to drop every line with a logged TypeError.
    log = QPlainTextEdit()
    texts: list[str] = []

    async def main() -> ProcessResult:
        await run_process(child("print('one'); print('two')"), on_line=texts.append)
        return await run_process(child("print('a'); print('b')"), on_line=log.appendPlainText)

    result = qasync_loop.run(main())
    assert result.ok
    assert texts == ["one", "two"]  # a Python one-argument callable: decided up front
    assert log.toPlainText() == "a\nb"  # a builtin: decided at the first line
    log.deleteLater()


def test_run_process_on_line_that_takes_neither_form_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match=r"on_line must take \(text, stream\) or \(text\)"):
        asyncio.run(run_process([PY, "-c", "pass"], on_line=lambda: None))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_line must be a callable"):
        asyncio.run(run_process([PY, "-c", "pass"], on_line="log"))  # type: ignore[arg-type]


@posix_only
def test_run_process_overall_timeout_applies_while_output_keeps_flowing(reap: list[int]) -> None:
    code = "import os, time\nprint(os.getpid())\nwhile True:\n    print('tick'); time.sleep(0.01)"
    lines: list[str] = []

    def on_line(text: str, stream: str) -> None:
        if not lines:
            reap.append(int(text))
        lines.append(text)

    result = asyncio.run(run_process(child(code), on_line=on_line, timeout=0.5))
    assert result.timed_out
    assert not result.ok
    assert result.returncode == -signal.SIGTERM
    assert "tick" in lines
    assert result.output_tail[-1] == "tick"


@posix_only
def test_run_process_kills_a_child_that_ignores_sigterm(reap: list[int]) -> None:
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(os.getpid())\n"
        "time.sleep(60)"
    )
    result = asyncio.run(
        run_process(
            child(code), on_line=lambda t, s: reap.append(int(t)), timeout=0.3, terminate_grace=0.2
        )
    )
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL


_TREE = (
    "import os, signal, subprocess, sys, time\n"
    "grandchild = subprocess.Popen([sys.executable, '-c',\n"
    "    'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
    "print(os.getpid(), grandchild.pid)\n"
    "time.sleep(60)"
)


@posix_only
def test_run_process_cancel_stops_the_whole_process_tree(reap: list[int]) -> None:
    pids: list[int] = []

    async def main() -> None:
        ready = asyncio.Event()

        def on_line(text: str, stream: str) -> None:
            pids.extend(int(p) for p in text.split())
            reap.append(pids[0])
            ready.set()

        task = asyncio.ensure_future(
            run_process(child(_TREE), on_line=on_line, terminate_grace=0.2)
        )
        await ready.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    child_pid, grandchild_pid = pids
    assert wait_dead(child_pid)
    assert wait_dead(grandchild_pid)  # it ignored SIGTERM: SIGKILL to the group got it


@posix_only
def test_run_process_tree_does_not_outlive_the_interpreter(reap: list[int]) -> None:
    # The application exits while a run is in flight on a daemon thread (a LoopThread,
    # a parked long job): nobody is left to stop the tree, which lives in its own
    # session and, here, ignores SIGTERM.  The exit hook must kill it.
    script = (
        "import asyncio, sys, threading\n"
        "from casare_workers import run_process\n"
        "started = threading.Event()\n"
        "def on_line(text, stream):\n"
        "    print(text, flush=True)\n"
        "    started.set()\n"
        "def run():\n"
        f"    asyncio.run(run_process({child(_TREE)!r}, on_line=on_line))\n"
        "threading.Thread(target=run, daemon=True).start()\n"
        "assert started.wait(30)\n"
    )
    done = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    child_pid, grandchild_pid = (int(pid) for pid in done.stdout.split())
    reap.append(child_pid)
    assert wait_dead(child_pid)
    assert wait_dead(grandchild_pid)


@posix_only
def test_run_process_returns_when_the_child_exits_even_if_a_grandchild_holds_the_pipe(
    reap: list[int],
) -> None:
    code = (
        "import os, subprocess, sys\n"
        "print(os.getpid(), flush=True)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child done')"
    )

    async def main() -> ProcessResult:
        return await asyncio.wait_for(
            run_process(
                child(code),
                on_line=lambda t, s: reap.append(int(t)) if not reap else None,
                drain_timeout=0.2,
            ),
            timeout=30,
        )

    result = asyncio.run(main())
    assert result.ok
    assert result.output_tail == (str(reap[0]), "child done")


def test_run_process_under_a_qasync_loop_calls_on_line_on_the_gui_thread(qapp: Any) -> None:
    qasync = pytest.importorskip("qasync")
    seen: list[str] = []

    def on_line(text: str, stream: str) -> None:
        assert_gui_thread()
        seen.append(text)

    loop = qasync.QEventLoop(qapp)
    try:
        result = loop.run_until_complete(
            run_process(child("print('from qasync')"), on_line=on_line)
        )
    finally:
        loop.close()
    assert result.ok
    assert seen == ["from qasync"]


# -- SubprocessJob -------------------------------------------------------------------------


def test_subprocess_job_emits_every_line_before_the_result(
    manager: WorkerManager, qtbot: Any
) -> None:
    code = "for i in range(2000): print(f'line {i}')"
    job = SubprocessJob(child(code), manager=manager)
    assert job.name == os.path.basename(PY)
    sink = LineSink(job)
    job.start()
    run_to_end(qtbot, manager, job)
    assert sink.lines() == [f"line {i}" for i in range(2000)]
    kind, result = sink.events[-1]
    assert kind == "result"
    assert isinstance(result, ProcessResult)
    assert result.ok
    assert job.get(0) is result


def test_subprocess_job_missing_program_is_an_error(manager: WorkerManager, qtbot: Any) -> None:
    job = SubprocessJob(["/nonexistent/casare-installer"], manager=manager)
    sink = LineSink(job)
    job.start()
    run_to_end(qtbot, manager, job)
    kind, error = sink.events[-1]
    assert kind == "error"
    assert isinstance(error, TaskError)
    assert isinstance(error.exception, FileNotFoundError)
    assert job.state is TaskState.FAILED


@posix_only
def test_subprocess_job_cancel_kills_the_tree_and_emits_cancelled(
    manager: WorkerManager, qtbot: Any, reap: list[int]
) -> None:
    job = SubprocessJob(child(_TREE), terminate_grace=0.2, manager=manager)
    sink = LineSink(job)
    job.start()
    qtbot.waitUntil(lambda: bool(sink.lines()), timeout=20_000)
    pids = [int(p) for p in sink.lines()[0].split()]
    reap.append(pids[0])
    job.cancel()
    run_to_end(qtbot, manager, job)
    assert sink.events[-1] == ("cancelled", None)
    assert all(wait_dead(pid) for pid in pids)


@posix_only
def test_subprocess_job_timeout_is_a_result(
    manager: WorkerManager, qtbot: Any, reap: list[int]
) -> None:
    code = "import os, time\nprint(os.getpid())\ntime.sleep(60)"
    job = SubprocessJob(child(code), timeout=0.5, manager=manager)
    sink = LineSink(job)
    job.start()
    qtbot.waitUntil(lambda: bool(sink.lines()), timeout=20_000)
    reap.append(int(sink.lines()[0]))
    run_to_end(qtbot, manager, job)
    kind, result = sink.events[-1]
    assert kind == "result"
    assert result.timed_out


@posix_only
def test_subprocess_job_owner_destroyed_kills_the_child_silently(
    manager: WorkerManager, qtbot: Any, reap: list[int]
) -> None:
    owner = QObject()
    code = "import os, time\nprint(os.getpid())\ntime.sleep(60)"
    job = SubprocessJob(child(code), owner=owner, terminate_grace=0.2, manager=manager)
    sink = LineSink(job)
    job.start()
    qtbot.waitUntil(lambda: bool(sink.lines()), timeout=20_000)
    pid = int(sink.lines()[0])
    reap.append(pid)
    shiboken6.delete(owner)
    run_to_end(qtbot, manager, job)
    assert wait_dead(pid)
    assert job.state is TaskState.CANCELLED
    assert [kind for kind, _ in sink.events] == ["stdout"]  # nothing after the owner died


@posix_only
def test_subprocess_job_owner_dialog_closed_with_escape_stops_the_child(
    manager: WorkerManager, qtbot: Any, reap: list[int]
) -> None:
    # The first user's installer: SubprocessJob(owner=dialog), Esc closes the dialog.
    # The child used to run on (the dialog was only hidden, not destroyed).
    dialog = QDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    code = "import time\nprint('installing', flush=True)\ntime.sleep(60)"
    job = SubprocessJob(child(code), owner=dialog, terminate_grace=0.2, manager=manager)
    sink = LineSink(job)
    assert job.pid is None  # not started yet
    job.start()
    qtbot.waitUntil(lambda: sink.lines() == ["installing"], timeout=20_000)
    pid = pid_of(job)
    assert pid is not None
    reap.append(pid)
    QTest.keyClick(dialog, Qt.Key.Key_Escape)
    assert not dialog.isVisible()
    run_to_end(qtbot, manager, job)
    assert wait_dead(pid)
    assert job.state is TaskState.CANCELLED
    assert job.cancel_reason == "window closed"
    assert sink.events[-1] == ("cancelled", None)  # the dialog lives: it is told
    assert job.pid == pid  # still readable after the end


@posix_only
def test_subprocess_job_pid_is_the_child_process(
    manager: WorkerManager, qtbot: Any, reap: list[int]
) -> None:
    job = SubprocessJob(child("import os; print(os.getpid())"), manager=manager)
    sink = LineSink(job)
    job.start()
    run_to_end(qtbot, manager, job)
    assert job.pid == int(sink.lines()[0])


def test_subprocess_job_can_be_awaited_from_a_coroutine(
    manager: WorkerManager, qtbot: Any
) -> None:
    job = SubprocessJob(child("print('awaited')"), manager=manager)
    job.start()
    box: list[ProcessResult] = []

    async def waiter() -> ProcessResult:
        return await asyncio.wrap_future(job.future)

    t = threading.Thread(target=lambda: box.append(asyncio.run(waiter())))
    t.start()
    t.join(20)
    assert box[0].output_tail == ("awaited",)
    run_to_end(qtbot, manager, job)


def test_subprocess_job_bad_arguments_are_refused_at_construction(manager: WorkerManager) -> None:
    with pytest.raises(TypeError, match="single string"):
        SubprocessJob("pip install x", manager=manager)
    with pytest.raises(ConfigurationError, match="terminate_grace"):
        SubprocessJob([PY], terminate_grace=0, manager=manager)
    with pytest.raises(LookupError):
        SubprocessJob([PY], encoding="klingon", manager=manager)
    with pytest.raises(ConfigurationError, match="tail_lines"):
        SubprocessJob([PY], tail_lines=-1, manager=manager)


@posix_only
@pytest.mark.usefixtures("no_cyclic_gc")
def test_finished_subprocess_job_is_freed_by_reference_counting(
    manager: WorkerManager, qtbot: Any
) -> None:
    """No reference cycle keeps a job: the cyclic GC could free it on any thread."""
    job = SubprocessJob(child("print('line')"), manager=manager)
    sink = LineSink(job)
    job.start()
    run_to_end(qtbot, manager, job)
    assert sink.lines() == ["line"]
    ref = weakref.ref(job)
    del job, sink
    assert ref() is None, gc.get_referrers(ref())
