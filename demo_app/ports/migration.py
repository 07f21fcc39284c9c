"""The app's migration worker, ported to a :class:`~casare_workers.LongJob`.

What the app does today, in outline: a ``QThread`` subclass whose ``run()`` creates an
event loop by hand, runs ``await migrate(source, target, dry_run)`` to completion on
it, and emits a custom ``finished(object)`` with a result dataclass (whose ``success``
may be False) or ``error(str)`` with the exception's text; ``progress(int, int)`` is
declared for the steps.  What goes wrong with it:

* its ``finished`` shadows ``QThread.finished`` (connections meant for one get the other);
* a second click replaces ``self.worker`` while the first thread runs, and closing the
  dialog deletes it: "QThread: Destroyed while thread is still running", abort;
* the loop is closed without cancelling leftover tasks or async generators;
* there is no cancel, and a cancel in the middle of a write would need a rollback;
* ``error(str)`` throws the traceback away.

The port (this module):

* :class:`MigrationJob` runs the use case *step by step* on the job's own loop
  (``async def work``): ``progress(done, total)`` after each step, the step's name as
  ``status``, ``elapsed``/``eta`` for free;
* a business failure (a step that reports errors) is a :class:`MigrationResult` with
  ``success=False`` and the errors; only exceptions reach ``error`` (with the traceback);
* cancel is honoured only *between* steps (``cancel_async_task = False`` and a
  checkpoint before each step), and if a step already wrote, the use case's
  ``rollback()`` runs before the job ends ``cancelled``; the final commit is behind
  ``ctx.point_of_no_return()`` so that a late cancel cannot disown a finished migration;
* lifetime is the job's: owned by the dialog, never destroyed while running.

Run it: ``python -m demo_app.ports.migration`` (``--headless`` prints the outcome).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from casare_workers import (
    JobContext,
    LongJob,
    TaskCancelledError,
    TaskFailure,
    WorkerManager,
)

__all__ = (
    "InMemoryMigration",
    "MigrationDialog",
    "MigrationJob",
    "MigrationResult",
    "MigrationStep",
    "MigrationUseCase",
    "StepOutcome",
    "main",
)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one migration step reports.

    Attributes:
        ok: False for a business failure (the data cannot be migrated as it is).
        wrote: True if the step changed the target (a rollback has something to undo).
        errors: Human-readable reasons when ``ok`` is False.
    """

    ok: bool = True
    wrote: bool = False
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MigrationStep:
    """One step of a migration plan: a name to show and a coroutine function to run.

    Attributes:
        name: Shown as the job's status while the step runs.
        run: ``await run(dry_run)`` performs the step.
    """

    name: str
    run: Callable[[bool], Awaitable[StepOutcome]]


class MigrationUseCase(Protocol):
    """The async use case the app already has, seen as a plan of steps plus a rollback."""

    async def plan(self, source: str, target: str) -> Sequence[MigrationStep]:
        """Return the steps that migrate ``source`` into ``target``."""
        ...

    async def rollback(self) -> None:
        """Undo every write the steps made so far."""
        ...


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """The outcome the dialog shows; ``success=False`` is a business failure, not an error.

    Attributes:
        success: True if every step migrated its part.
        source: Where the data came from.
        target: Where it went.
        dry_run: True if nothing was written on purpose.
        steps_done: Steps completed successfully.
        total_steps: Steps planned.
        errors: The failing step's reasons.
        rolled_back: True if writes were undone after a failure.
    """

    success: bool
    source: str
    target: str
    dry_run: bool
    steps_done: int
    total_steps: int
    errors: tuple[str, ...] = ()
    rolled_back: bool = False


class MigrationJob(LongJob[MigrationResult]):
    """Runs a :class:`MigrationUseCase` step by step on the job's own event loop.

    Signals are the LongJob's: ``progress(done, total)`` per step, ``status(step name)``,
    ``result(MigrationResult)``, ``error(TaskFailure)`` for exceptions, ``cancelled()``.

    Example:
        >>> job = MigrationJob(use_case, "legacy", "v2", owner=dialog)  # doctest: +SKIP
        >>> job.result.connect(dialog.show_result)                      # doctest: +SKIP
        >>> job.start()                                                 # doctest: +SKIP
    """

    # Cancellation is cooperative: a step in progress always completes (a half-written
    # workflow is worse than a late cancel); the job stops at the next step boundary.
    cancel_async_task = False

    def __init__(
        self,
        use_case: MigrationUseCase,
        source: str,
        target: str,
        dry_run: bool = False,
        *,
        owner: QObject | None = None,
        manager: WorkerManager | None = None,
    ) -> None:
        super().__init__(owner=owner, key="migration", name="migration", manager=manager)
        self.use_case = use_case
        self.source = source
        self.target = target
        self.dry_run = dry_run

    async def work(self, ctx: JobContext) -> MigrationResult:
        """Plan, then run each step; check for cancel and pause between steps.  Job thread."""
        steps = list(await self.use_case.plan(self.source, self.target))
        total = len(steps)
        ctx.progress(0, total)
        wrote = False
        for done, step in enumerate(steps):
            try:
                await ctx.acheckpoint()  # cancel is honoured here, and only here
            except TaskCancelledError:
                await self._undo(ctx, wrote)
                raise
            ctx.status(step.name)
            outcome = await step.run(self.dry_run)
            wrote = wrote or outcome.wrote
            if not outcome.ok:
                rolled_back = await self._undo(ctx, wrote)
                return self._result(False, done, total, outcome.errors, rolled_back)
            ctx.progress(done + 1, total)
        try:
            ctx.point_of_no_return()  # the last moment a cancel can still undo everything
        except TaskCancelledError:
            await self._undo(ctx, wrote)
            raise
        return self._result(True, total, total)

    async def _undo(self, ctx: JobContext, wrote: bool) -> bool:
        if not wrote or self.dry_run:
            return False
        ctx.status("rolling back")
        await self.use_case.rollback()
        return True

    def _result(
        self,
        success: bool,
        done: int,
        total: int,
        errors: tuple[str, ...] = (),
        rolled_back: bool = False,
    ) -> MigrationResult:
        return MigrationResult(
            success, self.source, self.target, self.dry_run, done, total, errors, rolled_back
        )


class InMemoryMigration:
    """A stand-in use case: migrates workflows between in-memory workspaces.

    One step per workflow: its schema version is copied to the target, bumped by one.
    For the demo and the tests.

    Args:
        workspaces: Workspace name to {workflow name: schema version}.
        failing: Workflow name to the reason its step fails (a business failure).
        exploding: Workflow names whose step raises (an error).
        step_delay: Seconds each step takes (``asyncio.sleep``), for the demo.
        before_step: Awaited with the workflow's name before each step (tests hold the
            migration at a known point with it).
    """

    def __init__(
        self,
        workspaces: dict[str, dict[str, int]],
        *,
        failing: Mapping[str, str] | None = None,
        exploding: frozenset[str] = frozenset(),
        step_delay: float = 0.0,
        before_step: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.workspaces = workspaces
        self.failing = dict(failing or {})
        self.exploding = exploding
        self.step_delay = step_delay
        self.before_step = before_step
        self.rollbacks = 0
        self._snapshot: tuple[str, dict[str, int]] | None = None

    async def plan(self, source: str, target: str) -> list[MigrationStep]:
        """One step per workflow of ``source`` (sorted by name)."""
        if source not in self.workspaces:
            raise KeyError(f"no workspace named {source!r}")
        self.workspaces.setdefault(target, {})
        self._snapshot = (target, dict(self.workspaces[target]))
        return [
            MigrationStep(
                f"migrating {name}", functools.partial(self._migrate, source, target, name)
            )
            for name in sorted(self.workspaces[source])
        ]

    async def _migrate(self, source: str, target: str, name: str, dry_run: bool) -> StepOutcome:
        if self.before_step is not None:
            await self.before_step(name)
        if self.step_delay:
            await asyncio.sleep(self.step_delay)
        if name in self.exploding:
            raise ConnectionError(f"database connection lost while migrating {name!r}")
        if name in self.failing:
            return StepOutcome(ok=False, errors=(f"{name}: {self.failing[name]}",))
        if dry_run:
            return StepOutcome()
        self.workspaces[target][name] = self.workspaces[source][name] + 1
        return StepOutcome(wrote=True)

    async def rollback(self) -> None:
        """Restore the target workspace as it was when the plan was made."""
        if self._snapshot is not None:
            target, before = self._snapshot
            self.workspaces[target] = dict(before)
        self.rollbacks += 1


class MigrationDialog(QDialog):
    """Shows one migration: progress, the current step, elapsed and ETA, Cancel/Close.

    Closing the dialog while the migration runs cancels it (it stops at the next step
    boundary and rolls back); the job is owned by the dialog, so deleting the dialog
    cancels it too and nothing is delivered to the dead widgets.
    """

    def __init__(
        self,
        use_case: MigrationUseCase,
        source: str,
        target: str,
        dry_run: bool = False,
        *,
        manager: WorkerManager | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Migrate {source} → {target}")
        self._args = (use_case, source, target, dry_run)
        self._manager = manager
        self.job: MigrationJob | None = None
        self.outcome: MigrationResult | TaskFailure | None = None
        layout = QVBoxLayout(self)
        self.bar = QProgressBar(self)
        self.step_label = QLabel("ready", self)
        self.time_label = QLabel("", self)
        self.button = QPushButton("Cancel", self)
        self.button.clicked.connect(self.cancel_or_close)
        for widget in (self.bar, self.step_label, self.time_label, self.button):
            layout.addWidget(widget)

    def start(self) -> MigrationJob:
        """Start the migration (a second call replaces the first, which is cancelled)."""
        use_case, source, target, dry_run = self._args
        job = MigrationJob(use_case, source, target, dry_run, owner=self, manager=self._manager)
        job.progress.connect(self._on_progress)
        job.status.connect(self.step_label.setText)
        job.result.connect(self._on_result)
        job.error.connect(self._on_error)
        job.cancelled.connect(self._on_cancelled)
        self.job = job
        self.button.setText("Cancel")
        job.start()
        return job

    def cancel_or_close(self) -> None:
        """The button: cancel a running migration, close a finished one.  GUI thread."""
        job = self.job
        if job is not None and not job.done():
            job.cancel()
            self.step_label.setText("cancelling after the current step…")
        else:
            self.accept()

    def reject(self) -> None:
        """Escape / the window's close button: cancel the migration, then close."""
        if self.job is not None:
            self.job.cancel()
        super().reject()

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setMaximum(max(total, 1))
        self.bar.setValue(done)
        job = self.job
        if job is not None:
            eta = job.eta
            left = "" if eta is None else f", about {eta:.1f} s left"
            self.time_label.setText(f"{job.elapsed:.1f} s elapsed{left}")

    def _on_result(self, result: MigrationResult) -> None:
        self.outcome = result
        if result.success:
            text = f"Migrated {result.steps_done} workflows" + (
                " (dry run)" if result.dry_run else ""
            )
        else:
            text = "Migration failed: " + "; ".join(result.errors)
            if result.rolled_back:
                text += " (changes rolled back)"
        self.step_label.setText(text)
        self.button.setText("Close")

    def _on_error(self, error: TaskFailure) -> None:
        self.outcome = error
        self.step_label.setText(f"Error: {error}")
        self.button.setText("Close")

    def _on_cancelled(self) -> None:
        self.step_label.setText("Migration cancelled (changes rolled back)")
        self.button.setText("Close")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example: a dialog migrating 20 demo workflows."""
    parser = argparse.ArgumentParser(prog="python -m demo_app.ports.migration")
    parser.add_argument("--headless", action="store_true", help="no window; print the outcome")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    manager = WorkerManager()
    use_case = InMemoryMigration(
        {"legacy": {f"workflow-{i:02}": 1 for i in range(20)}},
        step_delay=0.0 if args.headless else 0.15,
    )
    dialog = MigrationDialog(use_case, "legacy", "v2", args.dry_run, manager=manager)
    job = dialog.start()
    if args.headless:
        job.result.connect(lambda result: print(result))
        job.error.connect(lambda error: print(error))
        job.cancelled.connect(lambda: print("cancelled"))
        manager.busy_changed.connect(lambda busy: None if busy else QTimer.singleShot(0, app.quit))
    else:
        dialog.finished.connect(app.quit)
        dialog.show()
    code = app.exec()
    manager.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
