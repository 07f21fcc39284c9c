"""Every code block in README.md and docs/*.md runs as written.

The rules the pages follow (docs/guide.md, "About the examples"):

* ``python`` blocks of a page run top to bottom in one namespace, as one program, on the
  GUI thread while its event loop (a real qasync loop) runs, as the code of a running
  application does (one ``exec()`` per page, like an application's one ``app.exec()``;
  test functions a page defines run after it, as pytest would run them).  Names a block
  uses without defining them
  are the reader's own (``self``, ``paths``, ``load``...): :func:`standins` gives each a
  small stand-in (files in a temporary directory, a local subprocess, fake services).
  Names from ``casare_workers``, PySide6 and the standard library are imported.
* A block with ``await`` at the top level is the body of a coroutine on the GUI loop
  (a real qasync loop).
* A block with ``if __name__ == "__main__":`` is a complete program: it runs as a script
  in its own interpreter.
* A block whose first line is ``# fragment: <why>`` is not run; :data:`FRAGMENTS` lists
  the few there are, so the list cannot grow unnoticed.
* After each block, and the checks in :data:`DRIVERS` that use what it defined, the
  page's managers must become idle with nothing logged at ERROR level by the library,
  and no slot may raise (pytest-qt fails the test then).
* ``sh``/``console`` blocks: the commands are checked cheaply (``./dev`` dispatch,
  benchmark scripts and their options, ``pip`` extras, the ``dask`` CLI); running them
  builds environments or runs benchmarks for minutes.

Two stand-ins change what runs: code in a block cannot reach worker processes (a
function defined by ``exec`` cannot be imported by name), so on pages that do not build
their own manager the ``"cpu"`` pool is a thread pool; the complete program in
asyncio.md, and the guide (whose page builds the default manager), run the real process
pool.  ``QApplication(...)`` in a block returns the test's application (one per
process).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import functools
import inspect
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import tomllib
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import QProcess, QTimer, Slot
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QStatusBar,
    QWidget,
)

import casare_workers
from casare_workers import LoopThread, PoolConfig, WorkerManager, set_default_manager
from casare_workers.pytest_plugin import AsyncRunner
from tests import doc_standins

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
#: Seconds a page's managers may take to become idle after a block.
SETTLE = 30.0

#: Blocks that are not run, with the reason their first line gives.  Keep it short.
FRAGMENTS = {
    ("docs/migration.md", "superqt's API (superqt is not a dependency of this project)"),
    (
        "docs/migration.md",
        "the hand-written QThread this section replaces (run as is, it can abort the process)",
    ),
}


# -- reading the pages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str

    @property
    def fragment(self) -> str | None:
        first = self.code.split("\n", 1)[0]
        match = re.match(r"#\s*fragment:\s*(.+)", first)
        return match.group(1).strip() if match else None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


def blocks_of(page: str) -> list[Block]:
    """The fenced code blocks of a page (MyST directives such as ``{eval-rst}`` excluded)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        info = match.group("info").strip()
        if info.startswith("{"):
            continue
        indent = len(match.group("indent"))
        body = "\n".join(line[indent:] for line in match.group("body").splitlines())
        line = text.count("\n", 0, match.start()) + 2  # the block's first code line
        found.append(Block(page, line, info.split()[0] if info else "", body + "\n"))
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PYTHON_PAGES = sorted({b.page for b in ALL_BLOCKS if b.lang == "python"})
COMMAND_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("sh", "console")]


def test_every_fence_is_read_and_every_block_has_a_known_language() -> None:
    # A fence the reader does not pair (text after a closing fence, a missing one) would
    # hide a block from the runner: every fence line must belong to a block read.
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        fences = len(re.findall(r"^ *```", text, re.M))
        assert fences == 2 * len(_FENCE.findall(text)), f"{page}: an unpaired ``` fence"
    assert ALL_BLOCKS, "no code blocks found"
    # text: diagrams and sample output, not code.
    assert {b.lang for b in ALL_BLOCKS} <= {"python", "sh", "console", "text"}
    fragments = {(b.page, b.fragment) for b in ALL_BLOCKS if b.fragment is not None}
    assert fragments == FRAGMENTS


# -- stand-ins for the reader's own objects --------------------------------------------------


class Recorder:
    """Any method you call on it: recorded, returns None."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, attr: str) -> Callable[..., None]:
        if attr.startswith("__"):
            raise AttributeError(attr)

        def record(*args: Any, **_kwargs: Any) -> None:
            self.calls.append((attr, args))

        return record


class StandInWidget(QWidget):
    """``self`` in the examples: the widget the code is in."""

    def __init__(self) -> None:
        super().__init__()
        self.bar = QProgressBar(self)
        self.status_label = QLabel(self)
        self.preview_label = QLabel(self)
        self.grid = Recorder("grid")
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.manager: WorkerManager | None = None

    def __getattr__(self, attr: str) -> Callable[..., None]:
        # Only reached for names the widget does not have: show_text, show_error, ...
        if attr.startswith("_") or attr in ("calls", "bar", "manager"):
            raise AttributeError(attr)

        def record(*args: Any) -> None:
            self.calls.append((attr, args))

        return record

    # Real slots for the tutorial pattern: its signals are emitted on a pool thread, and
    # only a QObject's slot is safely queued to the GUI thread.
    @Slot(object)
    def print_output(self, value: object) -> None:
        self.calls.append(("print_output", (value,)))

    @Slot(int)
    def progress_fn(self, n: int) -> None:
        self.calls.append(("progress_fn", (n,)))


class StandInDialog(QDialog):
    """``dialog`` in the examples: an installer dialog with a log."""

    def __init__(self) -> None:
        super().__init__()
        self.log = QPlainTextEdit(self)
        self.results: list[object] = []

    @Slot(object)
    def show_result(self, result: object) -> None:
        self.results.append(result)


class ConfirmDialog(QDialog):
    """A dialog the user accepts as soon as it is shown."""

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.accept)


class Step:
    """One step of a migration: ``await step()`` or ``await step.run()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs = 0

    async def run(self) -> None:
        await asyncio.sleep(0)
        self.runs += 1

    def __call__(self) -> Any:
        return self.run()


@dataclass(frozen=True)
class MigrationResult:
    success: bool


def _existing_app(*_args: Any) -> Any:
    """``QApplication(...)`` in a block: the test process already has its application."""
    return QtWidgets.QApplication.instance()


def _import_for_docs(
    name: str,
    globals_: Any = None,
    locals_: Any = None,
    fromlist: Any = (),
    level: int = 0,
) -> Any:
    module = builtins.__import__(name, globals_, locals_, fromlist, level)
    if name == "PySide6.QtWidgets" and fromlist and "QApplication" in fromlist:
        proxy = types.SimpleNamespace(**{n: getattr(module, n) for n in fromlist})
        proxy.QApplication = _existing_app
        return proxy
    return module


def standins(page: str, tmp: Path, runner: AsyncRunner) -> dict[str, Any]:
    """The namespace a page runs in: imports as a reader has them, plus stand-ins."""
    ns: dict[str, Any] = {"__name__": "docs_example", "__builtins__": dict(vars(builtins))}
    ns["__builtins__"]["__import__"] = _import_for_docs
    for name in casare_workers.__all__:
        ns[name] = getattr(casare_workers, name)
    for module in (QtCore, QtWidgets):
        for name in dir(module):
            if name.startswith("Q"):
                ns[name] = getattr(module, name)
    ns.update(QApplication=_existing_app, Signal=QtCore.Signal, Slot=QtCore.Slot)
    ns.update(asyncio=asyncio, sys=sys, os=os, pytest=pytest, threading=threading, time=time)
    ns.update(functools=functools, traceback=traceback)

    # Files and data.
    for name, content in {"report.pdf": b"%PDF", "a.txt": b"content", "b.txt": b"other"}.items():
        (tmp / name).write_bytes(content)
    paths = []
    for i in range(4):
        path = tmp / f"page{i}.png"
        path.write_bytes(b"png")
        paths.append(str(path))
    ns.update(paths=paths, path=paths[0], files=paths, rows=["a", "b", "c"], text="casare")
    ns.update(image=b"img", screenshot=b"pixels", provider="acme", hwnd=7, arg=2)
    written: list[object] = []
    ns.update(written=written, write=written.append)

    # The widgets the code is in.
    self_widget = StandInWidget()
    ns["self"] = self_widget
    ns["main_window"] = QWidget()
    ns["dialog"] = StandInDialog()
    ns["log"] = QPlainTextEdit()
    ns["status_bar"] = QStatusBar()
    ns["viewer"] = Recorder("viewer")
    ns["gallery"] = Recorder("gallery")
    ns["ConfirmDialog"] = ConfirmDialog
    ns["MigrationResult"] = MigrationResult
    ns["steps"] = [Step(f"step {i}") for i in range(3)]

    # The reader's functions (in worker threads).
    ns.update(
        load=lambda path: Path(path).read_bytes(),
        read_file=lambda path: Path(path).read_text(),
        read=lambda path: f"rows of {path}",
        show=Recorder("show").show,
        report=Recorder("report").report,
        search=lambda text, timeout=3: [f"{text} hit"],
        upload=lambda f: None,
        export_rows=lambda rows, path: len(rows),
        render_preview=lambda path: f"preview of {path}",
        blocking_call=lambda arg: arg * 2,
        fetch_models=lambda provider: [f"{provider}-large"],
        fetch_quota=lambda provider: 100,
        oauth_flow=lambda user: f"token for {user}",
        fetch=lambda url: "body",
        execute_this_fn=_tutorial_function,
        com_init=lambda: None,
        com_uninit=lambda: None,
        find_window=lambda title: 42,
        click=lambda window, button: None,
        thumbnail=doc_standins.thumbnail,
        make_thumbnail=doc_standins.make_thumbnail,
        ocr=doc_standins.ocr,
        ocr_page=doc_standins.ocr_page,
    )

    class Service:
        def ready(self, job_id: object) -> bool:
            return True

        def result(self, job_id: object) -> str:
            return f"result of {job_id}"

    ns["service"] = Service()

    async def get_title(hwnd: int) -> str:
        await asyncio.sleep(0)
        return f"window {hwnd}"

    class Oauth:
        async def refresh(self) -> str:
            await asyncio.sleep(0)
            return "token"

    ns.update(get_window_title=get_title, read_title=get_title, oauth=Oauth())
    ns["desktop_sdk"] = types.SimpleNamespace(get_title=get_title)
    com_calls: list[str] = []
    ns["pythoncom"] = types.SimpleNamespace(
        CoInitialize=lambda: com_calls.append("init"),
        CoUninitialize=lambda: com_calls.append("uninit"),
    )
    ns["com_calls"] = com_calls
    ns["name"] = "--help"  # pip install --help: the real installer, offline, exit code 0
    ns["cmd"] = [sys.executable, "-c", "print('step 1'); print('step 2')"]
    ns["loop"] = runner.loop

    # A process whose finished a coroutine awaits (started by PREPARE).
    process = QProcess()
    process.setProgram(sys.executable)
    process.setArguments(["-c", "pass"])
    ns["process"] = process

    # Page-specific: a slow service, where an example needs a request still in flight.
    if page == "docs/guide.md":
        release = threading.Event()
        ns["_release"] = release

        def fetch_models(provider: str) -> list[str]:
            assert release.wait(SETTLE), "never released"
            return [f"{provider}-large"]

        ns["fetch_models"] = fetch_models
    if page not in OWN_MANAGER:
        # The application's manager, as the pages assume; "cpu" on threads (see above).
        ns["manager"] = WorkerManager(pools={"cpu": PoolConfig(2)})
        self_widget.manager = ns["manager"]
    return ns


#: Pages whose first blocks build the application's manager themselves.
OWN_MANAGER = {"docs/guide.md", "docs/distributed.md"}


def _tutorial_function(progress_callback: Any) -> str:
    for n in range(5):
        progress_callback.emit(n * 25)
    return "Done."


# -- what each block's definitions are checked with ------------------------------------------

#: Code run after a block, in its namespace, using what it defined; ``await`` allowed.
#: Keyed by (page, a line the block contains).
DRIVERS: dict[tuple[str, str], str] = {
    ("README.md", "class Importer(QWidget):"): """
importer = Importer(manager)
importer.start(paths)
await until(lambda: importer.windowTitle() == "4 files imported")
assert importer.bar.value() == importer.bar.maximum() == 4
""",
    ("docs/guide.md", "handle.signals.error.connect(lambda e: print(e.traceback))"): """
await until(lambda: viewer.calls == [("show_bytes", (b"%PDF",))])
""",
    ("docs/guide.md", "assert again is first"): """
_release.set()
assert await first == ["acme-large"]
""",
    ("docs/guide.md", "def sync_folder(files, ctx):"): """
assert await manager.submit(sync_folder, files) is None
assert await manager.submit(poll_until_ready, 1) == "result of 1"
""",
    ("docs/guide.md", "handle.signals.status.connect(self.status_label.setText)"): """
await handle
await until(lambda: self.bar.value() == 100)
""",
    ("docs/guide.md", "handle.then(gallery.show_all)"): """
await handle
_thumbs = [doc_standins.thumbnail(p) for p in paths]
await until(lambda: gallery.calls == [("show_all", (_thumbs,))])
""",
    ("docs/guide.md", "worker = Export(rows)"): """
await until(lambda: ("show_count", (3,)) in self.calls)
assert written == ["a", "b", "c"] and self.bar.value() == 100
""",
    ("docs/guide.md", "class Report(Worker):"): """
assert await manager.start(Report(rows, "sales")) == "sales: 3 rows"
""",
    ("docs/guide.md", "QThreadPool.globalInstance().start(preview)"): """
await until(lambda: self.preview_label.text() == f"preview of {path}")
""",
    ("docs/guide.md", "def test_loads(manager, qtbot):"): """# after the page
_own = WorkerManager(default=False)
try:
    test_loads(_own, qtbot)
finally:
    _own.shutdown()
""",
    ("docs/longjobs.md", 'job = Migrate(steps, owner=self, key="migration")'): """
await until(lambda: ("show_report", ("3 steps migrated",)) in self.calls)
assert self.bar.value() == 100
""",
    ("docs/longjobs.md", "def work(self, ctx):"): """
_export = Export(rows, key="export")
_export.start()
assert await _export == 3
""",
    ("docs/longjobs.md", "job.start()  # Esc on the dialog"): """
await until(lambda: len(dialog.results) == 1)
assert dialog.results[0].ok and "Usage" in dialog.log.toPlainText() and job.pid is not None
""",
    ("docs/longjobs.md", "result = await run_process(cmd, on_line=log.appendPlainText"): """
assert result.ok and log.toPlainText() == "step 1\\nstep 2"
""",
    ("docs/longjobs.md", "async def install(ctx):"): """
_job = LongJob(install)
_job.start()
assert await _job is True
""",
    ("docs/longjobs.md", "uia.close()  # finalizer"): """
assert com_calls == ["init", "uninit"]
""",
    ("docs/migration.md", "return desktop.options(timeout=10).call("): """
assert await manager.submit(window_title, 7) == "window 7"
""",
    ("docs/migration.md", "return run_coroutine_sync(get_window_title(hwnd), timeout=10)"): """
assert await manager.submit(window_title, 7) == "window 7"
""",
    ("docs/asyncio.md", "def worker(ctx):"): """
await manager.submit(worker)
assert status_bar.currentMessage() == "token refreshed"
""",
    ("docs/asyncio.md", "class DesktopContext:"): """
assert await manager.submit(DesktopContext().window_title, 7) == "window 7"
""",
    ("docs/asyncio.md", "class LoginDialog(QDialog):"): """
_dialog = LoginDialog(manager)
_dialog.open()
_dialog.user.setText("ann")
_dialog.button.click()
await wait_signal(_dialog.finished, timeout=10)
assert _dialog.token == "token for ann"
""",
    ("docs/asyncio.md", "def test_refresh(manager, qasync_loop):"): """# after the page
_own = WorkerManager(default=False)
try:
    test_refresh(_own, runner)
finally:
    _own.shutdown()
""",
    ("docs/cpu-bound.md", "def ocr_pages(paths, ctx):"): """
await until(lambda: [c for c in self.calls if c[0] == "show_text"] != [])
assert self.bar.value() == 100 and await thumbs == [f"thumbnail of {p}" for p in paths]
""",
    ("docs/distributed.md", "handle.then(self.show_text, self.show_error)"): """
assert await handle == f"text of {path}"
await until(lambda: ("show_text", (f"text of {path}",)) in self.calls)
assert self.bar.value() == 100
""",
    ("docs/migration.md", "class WorkerSignals(QObject):"): """
await until(lambda: self.calls.count(("print_output", ("Done.",))) == 1)
""",
    ("docs/migration.md", "worker.signals.progress.connect(to_percent(self.progress_fn))"): """
await until(lambda: self.calls.count(("print_output", ("Done.",))) == 2)
assert ("progress_fn", (100,)) in self.calls
""",
    ("docs/migration.md", 'worker = Resize("photo.jpg", (64, 64))'): """
await until(lambda: ("print_output", ("photo.jpg at 64x64",)) in self.calls)
""",
    ("docs/migration.md", "job = MigrationJob(steps"): """
await until(lambda: ("show_result", (MigrationResult(success=True),)) in self.calls)
""",
}


#: A driver that starts with this runs after the page's program, outside the loop.
AFTER_PAGE = "# after the page"


def test_every_driver_matches_one_block() -> None:
    for page, needle in [*DRIVERS, *PREPARE]:
        hits = [
            b for b in ALL_BLOCKS if b.page == page and b.lang == "python" and needle in b.code
        ]
        assert len(hits) == 1, f"driver {page}: {needle!r} matches {len(hits)} blocks"


# -- running a page -------------------------------------------------------------------------

#: Code run just before a block (to arm a stand-in at the right moment).
PREPARE: dict[tuple[str, str], str] = {
    # The process must end after the coroutine connected to its finished signal.
    (
        "docs/asyncio.md",
        "await wait_signal(process.finished",
    ): "QTimer.singleShot(0, process.start)",
}


async def run_code(code: str, where: str, ns: dict[str, Any]) -> None:
    """Run ``code`` in ``ns``; a top-level ``await`` makes it a coroutine, awaited here."""
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, ns)
    if inspect.iscoroutine(result):
        await result


def run_program(block: Block, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run a complete program (a block with a ``__main__`` guard) as a script."""
    script = tmp / f"example_{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def managers_in(ns: dict[str, Any]) -> list[WorkerManager]:
    return [v for v in ns.values() if isinstance(v, WorkerManager) and shiboken6.isValid(v)]


def cleanup(ns: dict[str, Any]) -> None:
    """Stop what the page started: managers first (a Dask pool before its cluster)."""
    values = list(ns.values())
    for value in values:
        if isinstance(value, WorkerManager) and shiboken6.isValid(value):
            value.shutdown()
    for value in values:
        if isinstance(value, LoopThread):
            value.close()
        elif isinstance(value, QProcess) and shiboken6.isValid(value):
            value.waitForFinished(10_000)
        elif type(value).__name__ == "LocalCluster":
            value.close()
    for value in values:
        if isinstance(value, QWidget) and shiboken6.isValid(value) and value.parent() is None:
            value.deleteLater()


async def until(condition: Callable[[], bool], timeout: float = SETTLE) -> None:
    """Let the GUI loop run until ``condition()`` holds (a hang guard, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the example never got there"
        await asyncio.sleep(0.01)


@pytest.fixture
def library_errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="casare_workers")
    return caplog


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_page_examples_run_as_written(
    page: str,
    qtbot: Any,
    qasync_loop: AsyncRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    library_errors: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    set_default_manager(None)  # the page's first manager becomes the application's
    ns = standins(page, tmp_path, qasync_loop)
    ns.update(until=until, qtbot=qtbot, doc_standins=doc_standins)
    after_page: list[tuple[str, str]] = []
    ran: list[str] = []

    async def program() -> None:
        for block in blocks_of(page):
            if block.lang != "python" or block.fragment is not None:
                continue
            if IS_PROGRAM(block):
                done = await asyncio.to_thread(run_program, block, tmp_path)
                assert done.returncode == 0, f"{block.where}:\n{done.stdout}\n{done.stderr}"
                PROGRAM_CHECKS[block.page](done.stdout)
                continue
            prepare = lookup(PREPARE, block)
            if prepare:
                await run_code(prepare, f"preparing {block.where}", ns)
            await run_code(block.code, block.where, ns)
            ran.append(block.where)
            driver = lookup(DRIVERS, block)
            if driver and driver.startswith(AFTER_PAGE):
                after_page.append((driver, block.where))
            elif driver:
                await run_code(driver, f"driver of {block.where}", ns)
            await until(lambda: all(m.is_idle() for m in managers_in(ns)))
            errors = [r for r in library_errors.records if r.levelno >= logging.ERROR]
            assert not errors, f"{block.where}: {[r.getMessage() for r in errors]}"
            for manager in managers_in(ns):  # an example's work never fails quietly
                stats = manager.statistics()
                failed = sum(p.failed for p in stats.pools.values()) + stats.jobs.failed
                assert failed == 0, f"{block.where}: {failed} task(s) failed: {stats}"

    try:
        qasync_loop.run(program(), timeout=300)
        expected = [b for b in blocks_of(page) if b.lang == "python" and b.fragment is None]
        assert len(ran) == len(expected) - sum(IS_PROGRAM(b) for b in expected)
        # Test functions the page defines run as pytest runs them: outside the loop.
        ns.update(runner=qasync_loop)
        for driver, where in after_page:
            exec(compile(driver, f"driver of {where}", "exec"), ns)
    finally:
        cleanup(ns)
        set_default_manager(None)


def IS_PROGRAM(block: Block) -> bool:
    """A complete program: it guards its entry point."""
    return 'if __name__ == "__main__":' in block.code


def lookup(table: dict[tuple[str, str], str], block: Block) -> str | None:
    """The entry of ``table`` whose needle is in ``block`` (at most one may be)."""
    found = [
        code
        for (page, needle), code in table.items()
        if page == block.page and needle in block.code
    ]
    assert len(found) <= 1, f"{block.where}: more than one entry matches"
    return found[0] if found else None


#: What the complete programs print.
PROGRAM_CHECKS: dict[str, Callable[[str], None]] = {
    "docs/asyncio.md": lambda out: _expect(out.split(), ["5"]),  # "runs in a worker process"
    # aboutToQuit after each run_until_complete: the manager is open for both.
    "docs/guide.md": lambda out: _expect(
        out.splitlines(), ["6", "saved: SETTINGS", "cleaned up: 3", "saved: SETTINGS"]
    ),
}


def _expect(actual: object, expected: object) -> None:
    assert actual == expected


# -- commands ---------------------------------------------------------------------------------


def commands_of(block: Block) -> list[list[str]]:
    """The command lines of a shell block (comments, prompts and variables removed)."""
    commands = []
    for raw in block.code.splitlines():
        line = raw.split("  #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("$ ")
        for part in re.split(r";\s*(?:done\b|do\b)?\s*", line):
            words = shlex.split(part.strip()) if part.strip() else []
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # an environment assignment
            if words and words[0] not in ("for", "done"):
                commands.append(words)
    return commands


def _help_of(argv: list[str]) -> str:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [*argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@functools.cache
def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def check_command(words: list[str], tmp: Path) -> None:
    program = words[0]
    if program == "./dev":
        from tests.test_dev import run_dev

        nox_args = run_dev(tmp, *words[1:])
        assert nox_args[:2] == ["--session", words[1] if words[1] != "test" else "lint"]
    elif program == "python" and words[1:3] == ["-m", "pytest"]:
        for word in words[3:]:
            if word.startswith("tests/"):
                assert (ROOT / word).exists(), word
        if "-m" in words[3:]:
            marker = words[words.index("-m", 3) + 1]
            markers = _pyproject()["tool"]["pytest"]["ini_options"]["markers"]
            assert any(m.startswith(f"{marker}:") for m in markers), marker
    elif program == "python":
        script = words[1]
        assert (ROOT / script).is_file(), script
        help_text = _help_of([sys.executable, script])
        for word in words[2:]:
            if word.startswith("--"):
                assert word in help_text, f"{script} has no option {word}"
    elif program == "pip":
        spec = words[-1]
        match = re.fullmatch(r"casare_workers\[(\w+)\]", spec)
        assert match, spec
        assert match.group(1) in _pyproject()["project"]["optional-dependencies"]
    elif program == "dask":
        dask = Path(sys.executable).with_name("dask")
        if not dask.exists():
            pytest.skip("the dask CLI is installed with the dask extra")
        help_text = _help_of([str(dask), words[1]])
        for word in words[2:]:
            if word.startswith("--"):
                assert word in help_text, f"dask {words[1]} has no option {word}"
    else:
        pytest.fail(f"no check for the command {words!r}")


@pytest.mark.skipif(sys.platform == "win32", reason="the commands are POSIX shell")
@pytest.mark.parametrize("block", COMMAND_BLOCKS, ids=[b.where for b in COMMAND_BLOCKS])
def test_documented_commands_exist_and_take_the_options_shown(
    block: Block, tmp_path: Path
) -> None:
    commands = commands_of(block)
    assert commands, block.where
    for words in commands:
        with contextlib.chdir(tmp_path):
            check_command(words, tmp_path)
