"""The app's installer worker, ported to a :class:`~casare_workers.SubprocessJob`.

What the app does today, in outline: a ``QThread`` subclass runs
``python -m playwright install chromium`` with ``subprocess.Popen``, reads stdout line
by line emitting ``progress_update(str)``, then waits with a timeout and emits
``finished(bool, str)``: ``"Installation complete!"``, ``"Installation failed (exit
code: N)"``, ``"Installation timed out"``, or the exception's text.  What goes wrong:

* the timeout only starts once the output has ended (a child that hangs while printing,
  or a grandchild holding the pipe, hangs the worker for ever);
* closing the dialog leaves the child (and its own children) running;
* there is no cancel; ``finished`` shadows ``QThread.finished``; the thread is destroyed
  while running if the dialog goes first.

The port (this module) keeps the app's two signals and exact messages:

* :class:`Installer` (a QObject, no thread of its own): ``progress_update(str)`` for
  each line and ``done(bool, str)`` at the end, with one more message,
  ``"Installation cancelled"``; the overall timeout covers output *and* exit;
  ``cancel()`` terminates, then kills, the whole process tree;
* :func:`install` is the awaitable variant for callers inside coroutines;
* :class:`InstallerDialog` cancels the installation when it is closed (and the job,
  owned by it, is cancelled if it is deleted).

Run it: ``python -m demo_app.ports.installer`` (a stand-in command by default; pass
``--real`` to run the Playwright installer, which needs the network).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from casare_workers import (
    ProcessResult,
    SubprocessJob,
    TaskFailure,
    WorkerManager,
    run_process,
)

__all__ = (
    "CANCELLED",
    "COMPLETE",
    "DEMO_COMMAND",
    "PLAYWRIGHT_INSTALL",
    "TIMED_OUT",
    "Installer",
    "InstallerDialog",
    "failed",
    "install",
    "main",
    "outcome_of",
)

#: The command the app runs.
PLAYWRIGHT_INSTALL: tuple[str, ...] = (sys.executable, "-m", "playwright", "install", "chromium")
#: Seconds the whole installation may take (download included).
DEFAULT_TIMEOUT = 600.0

COMPLETE = "Installation complete!"
TIMED_OUT = "Installation timed out"
CANCELLED = "Installation cancelled"


def failed(exit_code: int) -> str:
    """The app's message for a non-zero exit code."""
    return f"Installation failed (exit code: {exit_code})"


def outcome_of(result: ProcessResult) -> tuple[bool, str]:
    """Map a finished command to the app's ``(success, message)``."""
    if result.timed_out:
        return False, TIMED_OUT
    if result.returncode != 0:
        return False, failed(result.returncode)
    return True, COMPLETE


def _unbuffered(env: Mapping[str, str] | None) -> dict[str, str]:
    # A Python child writes to a pipe in blocks; unbuffered, each line streams at once.
    merged = dict(os.environ if env is None else env)
    merged["PYTHONUNBUFFERED"] = "1"
    return merged


class Installer(QObject):
    """Runs the installer command and reports like the app's worker did.

    Signals (GUI thread):
        progress_update(str): one output line (stdout and stderr merged).
        done(bool, str): ``(success, message)``, exactly once per :meth:`start`.  Named
            ``done`` rather than ``finished``: the app's name shadowed QThread's.

    Args:
        command: The command to run (default: the Playwright install).
        timeout: Overall seconds, output and exit included.
        env: The child's environment (default: inherited), made unbuffered.
        terminate_grace: Seconds between SIGTERM and SIGKILL on cancel/timeout.
        manager: The manager tracking the job.
        parent: Qt parent (the dialog); the job is owned by this object.

    Example:
        >>> installer = Installer(parent=dialog)                    # doctest: +SKIP
        >>> installer.progress_update.connect(log.appendPlainText)  # doctest: +SKIP
        >>> installer.done.connect(dialog.show_outcome)             # doctest: +SKIP
        >>> installer.start()                                       # doctest: +SKIP
    """

    progress_update = Signal(str)
    done = Signal(bool, str)

    def __init__(
        self,
        command: Sequence[str] = PLAYWRIGHT_INSTALL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        terminate_grace: float = 3.0,
        manager: WorkerManager | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.command = tuple(command)
        self.timeout = timeout
        self.env = env
        self.terminate_grace = terminate_grace
        self._manager = manager
        self.job: SubprocessJob | None = None

    def start(self) -> SubprocessJob:
        """Start the installation; a running one is replaced (and its tree stopped)."""
        job = SubprocessJob(
            self.command,
            timeout=self.timeout,
            env=_unbuffered(self.env),
            terminate_grace=self.terminate_grace,
            owner=self,
            key="install",  # a second start supersedes (cancels) the first
            name="installer",
            manager=self._manager,
        )
        job.line.connect(self._on_line)
        job.result.connect(self._on_result)
        job.error.connect(self._on_error)
        job.cancelled.connect(self._on_cancelled)
        self.job = job
        job.start()
        return job

    def cancel(self) -> bool:
        """Stop the installation: terminate, then kill, the process tree.  Any thread."""
        return self.job.cancel() if self.job is not None else False

    def is_running(self) -> bool:
        """True while an installation has not ended."""
        return self.job is not None and not self.job.done()

    def _on_line(self, text: str, stream: str) -> None:
        self.progress_update.emit(text)

    def _on_result(self, result: ProcessResult) -> None:
        self.done.emit(*outcome_of(result))

    def _on_error(self, error: TaskFailure) -> None:
        self.done.emit(False, str(error.exception))  # the app showed the exception's text

    def _on_cancelled(self) -> None:
        self.done.emit(False, CANCELLED)


async def install(
    command: Sequence[str] = PLAYWRIGHT_INSTALL,
    *,
    on_line: Callable[[str], object] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    terminate_grace: float = 3.0,
) -> tuple[bool, str]:
    """The awaitable variant: run the installer on the caller's loop.

    ``on_line(text)`` runs on that loop (the GUI thread under qasync).  Cancelling the
    awaiting task stops the process tree and propagates ``CancelledError``.

    Returns:
        ``(success, message)`` with the app's messages.
    """
    forward = None
    if on_line is not None:
        line_sink = on_line

        def forward(text: str, stream: str) -> None:
            line_sink(text)

    try:
        result = await run_process(
            command,
            on_line=forward,
            timeout=timeout,
            env=_unbuffered(env),
            terminate_grace=terminate_grace,
        )
    except OSError as exc:  # the command could not run (not found, not executable)
        return False, str(exc)
    return outcome_of(result)


class InstallerDialog(QDialog):
    """A log of the installer's output, its outcome, and a Cancel/Close button.

    Closing the dialog (button, Escape, window close) while the installation runs
    cancels it: the child and its children are stopped.
    """

    def __init__(
        self,
        command: Sequence[str] = PLAYWRIGHT_INSTALL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        terminate_grace: float = 3.0,
        manager: WorkerManager | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Install browser")
        self.installer = Installer(
            command,
            timeout=timeout,
            terminate_grace=terminate_grace,
            manager=manager,
            parent=self,
        )
        self.outcome: tuple[bool, str] | None = None
        layout = QVBoxLayout(self)
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)  # a chatty installer must not grow without limit
        self.status = QLabel("installing…", self)
        self.button = QPushButton("Cancel", self)
        self.button.clicked.connect(self.reject)
        for widget in (self.log, self.status, self.button):
            layout.addWidget(widget)
        self.installer.progress_update.connect(self.log.appendPlainText)
        self.installer.done.connect(self._on_done)

    def start(self) -> SubprocessJob:
        """Start the installation (call after showing the dialog)."""
        self.button.setText("Cancel")
        self.status.setText("installing…")
        return self.installer.start()

    def reject(self) -> None:
        """Close; a running installation is cancelled first (the child is killed)."""
        self.installer.cancel()
        super().reject()

    def _on_done(self, success: bool, message: str) -> None:
        self.outcome = (success, message)
        self.status.setText(message)
        self.button.setText("Close")


_STAND_IN = (
    "import time\n"
    "for step in ('Downloading Chromium', 'Extracting', 'Installing'):\n"
    "    for pct in range(0, 101, 20):\n"
    "        print(f'{step} ... {pct}%')\n"
    "        time.sleep(0.05)\n"
    "print('Chromium downloaded to ~/.cache/ms-playwright')\n"
)


#: A stand-in for the real installer (a few seconds of progress lines, no network).
DEMO_COMMAND: tuple[str, ...] = (sys.executable, "-c", _STAND_IN)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example dialog (a stand-in command unless ``--real``)."""
    parser = argparse.ArgumentParser(prog="python -m demo_app.ports.installer")
    parser.add_argument("--real", action="store_true", help="run playwright install chromium")
    parser.add_argument("--headless", action="store_true", help="no window; print the outcome")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    manager = WorkerManager()
    command = PLAYWRIGHT_INSTALL if args.real else DEMO_COMMAND
    dialog = InstallerDialog(command, manager=manager)
    if args.headless:
        dialog.installer.progress_update.connect(print)
        dialog.installer.done.connect(lambda ok, message: (print(ok, message), app.quit()))
    else:
        dialog.finished.connect(app.quit)
        dialog.show()
    dialog.start()
    code = app.exec()
    manager.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
