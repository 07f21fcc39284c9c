"""The demo window: pools at work, a task table, launchers and a responsiveness meter."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from casare_workers import (
    LongJob,
    ManagerStatistics,
    PoolStatistics,
    ProgressBarDelegate,
    TaskFailure,
    TaskTableModel,
    WorkerManager,
    async_slot,
)
from demo_app.panels import PoolPanel, StallMeter
from demo_app.ports.installer import DEMO_COMMAND, InstallerDialog
from demo_app.ports.migration import InMemoryMigration, MigrationDialog
from demo_app.workloads import (
    IndexJob,
    LocalServer,
    count_primes,
    crash_the_process,
    fetch,
    normalise,
)

__all__ = ("DemoWindow",)

#: Work per CPU task (about 30-60 ms of pure Python on a laptop core).
PRIME_LIMIT = 60_000


class DemoWindow(QMainWindow):
    """Launch realistic workloads and watch every pool handle them.

    Every launcher submits with ``owner=self``: closing the window cancels what is left
    and nothing is delivered to a closed window.
    """

    def __init__(self, manager: WorkerManager) -> None:
        super().__init__()
        self.manager = manager
        self.server = LocalServer()
        self.setWindowTitle("casare_workers — pools at work")
        self.launchers: dict[str, QPushButton] = {}
        self.panels: dict[str, PoolPanel] = {}
        self.log_lines: list[str] = []

        central = QWidget(self)
        root = QVBoxLayout(central)
        root.setContentsMargins(10, 10, 10, 10)
        root.setSpacing(8)

        bar = QHBoxLayout()
        bar.setSpacing(6)
        for key, label, slot in self._launcher_specs():
            button = QPushButton(label, central)
            button.setObjectName(f"launch-{key}")
            button.clicked.connect(slot)
            bar.addWidget(button)
            self.launchers[key] = button
        bar.addStretch(1)
        self.stall_meter = StallMeter(central)
        bar.addWidget(self.stall_meter)
        root.addLayout(bar)

        pools = QWidget(central)
        grid = QGridLayout(pools)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(8)
        stats = manager.statistics()
        kinds = [(name, pool_stats.kind) for name, pool_stats in stats.pools.items()]
        kinds.append(("jobs", "long jobs"))
        job_captions = ("live", "running", "paused", "done", "failed", "cancelled", "per s")
        for i, (name, kind) in enumerate(kinds):
            panel = PoolPanel(name, kind, pools, job_captions if name == "jobs" else None)
            grid.addWidget(panel, i // 3, i % 3)
            self.panels[name] = panel
        root.addWidget(pools)

        tasks = QWidget(central)
        tasks_layout = QVBoxLayout(tasks)
        tasks_layout.setContentsMargins(0, 0, 0, 0)
        tasks_layout.setSpacing(4)
        header = QHBoxLayout()
        self.summary = QLabel("No tasks yet.", tasks)
        self.summary.setObjectName("summary")
        header.addWidget(self.summary, 1)
        self.pause_job = QPushButton("Pause job", tasks)
        self.pause_job.setObjectName("pause-job")
        self.pause_job.setEnabled(False)
        self.pause_job.clicked.connect(self.toggle_pause)
        header.addWidget(self.pause_job)
        self.job: LongJob[str] | None = None
        self.cancel_selected = QPushButton("Cancel selected", tasks)
        self.cancel_selected.clicked.connect(self.cancel_selected_rows)
        self.cancel_all = QPushButton("Cancel all", tasks)
        self.cancel_all.clicked.connect(self.cancel_everything)
        header.addWidget(self.cancel_selected)
        header.addWidget(self.cancel_all)
        tasks_layout.addLayout(header)
        self.model = TaskTableModel(manager, self, max_rows=500, refresh_ms=150)
        self.table = QTableView(tasks)
        self.table.setObjectName("task-table")
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(
            TaskTableModel.PROGRESS_COLUMN, ProgressBarDelegate(self.table)
        )
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header_view = self.table.horizontalHeader()
        header_view.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header_view.setStretchLastSection(True)
        for column, width in enumerate((190, 80, 90, 170, 70)):
            self.table.setColumnWidth(column, width)
        self.table.doubleClicked.connect(self.show_details)
        # Follow the newest tasks unless the user scrolled up to look at older ones.
        self.model.rowsInserted.connect(self._follow_new_rows)
        self.table.setToolTip("Double-click a failed task to see its traceback")
        tasks_layout.addWidget(self.table)
        root.addWidget(tasks, 1)  # the table takes the height the panels leave

        self.status = QLabel("Ready.", central)
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        root.addWidget(self.status)
        self.setCentralWidget(central)

        manager.statistics_changed.connect(self.show_statistics)
        # Sample the statistics while idle too (the plots keep scrolling), and redraw one
        # plot per tick, round robin: a redraw costs several ms, three at once would not
        # fit in a frame.
        self._plot_timer = QTimer(self)
        self._plot_timer.setInterval(200)
        self._plot_timer.timeout.connect(self._redraw_next)
        self._plot_timer.start()
        self._redraw_index = 0
        self.show_statistics(stats)

    # -- launchers -----------------------------------------------------------------------

    def _launcher_specs(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            ("io", "I/O burst (200)", self.launch_io_burst),
            ("cpu", "CPU batch", self.launch_cpu_batch),
            ("map", "map (20 000 items)", self.launch_map),
            ("job", "Long job", self.launch_long_job),
            # -- long jobs (issue 3): the two ports, each in its own dialog
            ("migration", "Migration (long job)", self.launch_migration),
            ("installer", "Installer (subprocess)", self.launch_installer),
            ("async", "Async sequence", self.launch_async_sequence),
            ("crash", "Crash a process", self.launch_crash),
        ]

    def launch_io_burst(self) -> None:
        """200 HTTP requests to the local server on the io pool.  GUI thread."""
        opts = self.manager.options(pool="io", owner=self, name="fetch")
        handles = [opts.submit(fetch, f"{self.server.url}/item/{i}") for i in range(200)]
        began = time.perf_counter()
        done = [0]

        def one_done(_: object) -> None:
            done[0] += 1
            if done[0] == len(handles):
                self.report(f"I/O burst: 200 requests in {time.perf_counter() - began:.2f} s")

        for handle in handles:
            handle.then(one_done, one_done, context=self)

    def launch_cpu_batch(self) -> None:
        """The same pure-Python batch on threads, then on processes.  GUI thread.

        Threads share one GIL: they take turns, and the GUI thread has to wait for its
        turn too, so the window stalls while they run (the meter shows it; the status
        line reports the worst stall of each phase).  The ``cpu`` pool's processes each
        have their own interpreter: faster, and the window stays smooth.
        """
        count = 2 * (os.cpu_count() or 1)
        items = [PRIME_LIMIT] * count
        results: dict[str, tuple[float, float]] = {}

        def run(pool: str, then: Callable[[], None] | None) -> None:
            began = time.perf_counter()
            opts = self.manager.options(pool=pool, owner=self, name=f"count_primes ({pool})")

            def done(_: object) -> None:
                results[pool] = (time.perf_counter() - began, self.stall_meter.worst_since(began))
                if then is not None:
                    then()
                    return
                (threads, t_stall), (processes, p_stall) = results["cpu_threads"], results["cpu"]
                self.report(
                    f"CPU batch of {count}: threads {threads:.2f} s (GUI stalled up to "
                    f"{t_stall:.0f} ms: the GIL), processes {processes:.2f} s (up to "
                    f"{p_stall:.0f} ms): {threads / processes:.1f}x the speed on processes"
                )

            opts.map(count_primes, items, chunksize=1).then(done, context=self)

        run("cpu_threads", lambda: run("cpu", None))

    def launch_crash(self) -> None:
        """A task that kills its worker process: only that task fails.  GUI thread."""
        opts = self.manager.options(pool="cpu", owner=self, name="crash_the_process")
        survivors = [
            self.manager.options(pool="cpu", owner=self, name="count_primes").submit(
                count_primes, PRIME_LIMIT // 4
            )
            for _ in range(3)
        ]
        crash = opts.submit(crash_the_process, "segfault")
        crash.then(
            None,
            lambda error: self.report(
                f"crash: {type(error.exception).__name__}; the other tasks went on"
            ),
            context=self,
        )
        for handle in survivors:
            handle.then(lambda _: None, context=self)

    def launch_map(self) -> None:
        """A 20 000-item map with aggregate progress.  GUI thread."""
        began = time.perf_counter()
        handle = self.manager.options(owner=self, name="map normalise").map(
            normalise, range(20_000)
        )
        handle.then(
            lambda values: self.report(
                f"map: {len(values)} items in {time.perf_counter() - began:.3f} s "
                f"({handle.chunks} chunks)"
            ),
            context=self,
        )

    def launch_long_job(self) -> None:
        """Start the pausable IndexJob (a LongJob on its own QThread).  GUI thread.

        ``key`` makes a second click supersede the running job instead of stacking a
        second one, and ``owner`` stops it when the window closes.
        """
        job = IndexJob(manager=self.manager, owner=self, key="index")
        job.result.connect(
            lambda digest: self.report(f"long job: digest {digest}, {job.elapsed:.1f} s")
        )
        job.cancelled.connect(lambda: self.report("long job: cancelled"))
        job.finished.connect(self._job_ended)
        self.job = job
        self.pause_job.setEnabled(True)
        self.pause_job.setText("Pause job")
        job.start()

    def toggle_pause(self) -> None:
        """Pause or resume the long job at its next checkpoint.  GUI thread."""
        job = self.job
        if job is None:
            return
        if job.paused:
            job.resume()
            self.pause_job.setText("Pause job")
        else:
            job.pause()
            self.pause_job.setText("Resume job")

    def _job_ended(self) -> None:
        if self.job is not None and self.job.done():
            self.pause_job.setEnabled(False)
            self.pause_job.setText("Pause job")

    @async_slot
    async def launch_async_sequence(self) -> None:
        """A coroutine on the GUI loop awaiting workers step by step (qasync)."""
        began = time.perf_counter()
        self.report("async: fetching an index page…")
        size = await self.manager.options(owner=self, name="async fetch").submit(
            fetch, f"{self.server.url}/index"
        )
        self.report(f"async: got {size} bytes; normalising 5 000 values…")
        values = await self.manager.options(owner=self, name="async map").map(
            normalise, range(5_000)
        )
        self.report("async: counting primes on the cpu pool…")
        primes = await self.manager.options(pool="cpu", owner=self, name="async primes").submit(
            count_primes, PRIME_LIMIT // 2
        )
        self.report(
            f"async sequence: {size} bytes, {len(values)} values, {primes} primes "
            f"in {time.perf_counter() - began:.2f} s"
        )

    # -- long jobs (issue 3) -----------------------------------------------------------

    def launch_migration(self) -> None:
        """Open the migration port (a LongJob over an async use case).  GUI thread."""
        use_case = InMemoryMigration(
            {"legacy": {f"workflow-{i:02}": 1 for i in range(20)}}, step_delay=0.15
        )
        dialog = MigrationDialog(use_case, "legacy", "v2", manager=self.manager, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        job = dialog.start()
        job.result.connect(
            lambda result: self.report(
                f"migration: {result.steps_done}/{result.total_steps} steps, "
                f"success={result.success}, {job.elapsed:.1f} s"
            )
        )
        job.cancelled.connect(lambda: self.report("migration: cancelled, rolled back"))

    def launch_installer(self) -> None:
        """Open the installer port (a SubprocessJob) on a stand-in command.  GUI thread."""
        dialog = InstallerDialog(DEMO_COMMAND, manager=self.manager, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.installer.done.connect(lambda ok, message: self.report(f"installer: {message}"))
        dialog.show()
        dialog.start()

    # -- end long jobs

    # -- table actions ------------------------------------------------------------------

    def cancel_selected_rows(self) -> None:
        """Cancel the tasks of the selected rows."""
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        cancelled = sum(self.model.cancel_row(row) for row in sorted(rows))
        self.report(f"Cancelled {cancelled} selected task(s).")

    def cancel_everything(self) -> None:
        """Cancel every task of the manager."""
        self.report(f"Cancelled {self.manager.cancel_all()} task(s).")

    def show_details(self, index: QModelIndex) -> None:
        """Show the traceback (or outcome) of a row in a non-modal dialog."""
        task: Any = self.model.task_at(index.row())
        failure: TaskFailure | None = getattr(task, "failure", None)
        text = (
            failure.traceback
            if failure is not None
            else str(self.model.index(index.row(), 5).data())
        )
        dialog = QDialog(self)
        dialog.setObjectName("details")
        dialog.setWindowTitle(f"{task.name} — {task.state.value}")
        layout = QVBoxLayout(dialog)
        view = QPlainTextEdit(text, dialog)
        view.setReadOnly(True)
        view.setMinimumSize(560, 260)
        layout.addWidget(view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
        buttons.rejected.connect(dialog.close)
        layout.addWidget(buttons)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.details = dialog

    # -- display ------------------------------------------------------------------------

    def show_statistics(self, stats: ManagerStatistics) -> None:
        """Update the panels and the summary.  GUI thread."""
        now = time.monotonic()
        for name, pool_stats in stats.pools.items():
            panel = self.panels.get(name)
            if panel is not None:
                panel.update_statistics(pool_stats, now)
        jobs = stats.jobs
        self.panels["jobs"].update_statistics(
            PoolStatistics(
                name="jobs",
                kind="long jobs",
                max_workers=jobs.live,
                workers=jobs.live,
                busy=jobs.running,
                abandoned=0,
                queued=jobs.paused,
                running=jobs.running,
                submitted=jobs.started,
                succeeded=jobs.succeeded,
                failed=jobs.failed,
                cancelled=jobs.cancelled,
            ),
            now,
        )
        total = sum(s.submitted for s in stats.pools.values())
        live = stats.live_tasks
        failed = sum(s.failed for s in stats.pools.values())
        self.summary.setText(f"{total} tasks submitted · {live} in flight · {failed} failed")

    def _follow_new_rows(self) -> None:
        bar = self.table.verticalScrollBar()
        if bar.value() >= bar.maximum() - 2 * self.table.verticalHeader().defaultSectionSize():
            QTimer.singleShot(0, self.table, self.table.scrollToBottom)

    def _redraw_next(self) -> None:
        panels = list(self.panels.values())
        if not panels:
            return
        if self._redraw_index == 0:
            self.show_statistics(self.manager.statistics())
        panels[self._redraw_index % len(panels)].redraw()
        self._redraw_index = (self._redraw_index + 1) % len(panels)

    def report(self, line: str) -> None:
        """Show a line in the status bar and keep it in :attr:`log_lines`.  GUI thread."""
        self.log_lines.append(line)
        self.status.setText(line)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing cancels the window's work (owner=self) and stops the local server."""
        self._plot_timer.stop()
        self.model.detach()
        self.server.close()
        super().closeEvent(event)
