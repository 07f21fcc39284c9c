"""``TaskTableModel``: a live ``QAbstractTableModel`` over a manager's tasks.

The model never reacts to single tasks.  The manager appends every submitted task to a
deque (``WorkerManager.watch_tasks``, ~0.05 µs per task, no signal), and a timer on the
GUI thread refreshes the model a few times a second: one ``rowsInserted`` for all new
tasks, one ``rowsRemoved`` for trimmed finished rows, one ``dataChanged`` spanning the
rows whose state or progress changed.  20 000 tasks or 200 000 progress updates cost the
view a handful of signals.

Long jobs started with the manager appear as rows too (in the ``jobs`` pool column);
anything with the :class:`TaskLike` attributes can be added with
:meth:`TaskTableModel.add`.
"""

from __future__ import annotations

import reprlib
from collections import deque
from typing import Any, Protocol

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import QBrush, QColor

from ._core._state import TaskState
from ._longjob import LongJob
from ._manager import WorkerManager

__all__ = ("TaskLike", "TaskTableModel")

_Index = QModelIndex | QPersistentModelIndex

_STATE_COLORS = {
    TaskState.PENDING: "#7a7a7a",
    TaskState.QUEUED: "#7a7a7a",
    TaskState.RUNNING: "#1565c0",
    TaskState.SUCCEEDED: "#2e7d32",
    TaskState.FAILED: "#c62828",
    TaskState.CANCELLED: "#8d6e63",
}

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


class TaskLike(Protocol):
    """What a row needs: ``TaskHandle`` has it, and so can long jobs."""

    id: int
    name: str

    @property
    def state(self) -> TaskState: ...

    @property
    def pool(self) -> str | None: ...

    @property
    def progress_value(self) -> tuple[int, int] | None: ...

    @property
    def elapsed(self) -> float: ...

    def cancel(self, *, reason: str = ...) -> bool: ...


class _JobRow:
    """A LongJob seen as a :class:`TaskLike` row (it has no ``pool``)."""

    __slots__ = ("job",)
    pool = "jobs"

    def __init__(self, job: LongJob[Any]) -> None:
        self.job = job

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def state(self) -> TaskState:
        return self.job.state

    @property
    def progress_value(self) -> tuple[int, int] | None:
        return self.job.progress_value

    @property
    def status_text(self) -> str | None:
        return self.job.status_text

    @property
    def elapsed(self) -> float:
        return self.job.elapsed

    @property
    def failure(self) -> Any:
        return self.job.failure

    @property
    def cancel_reason(self) -> str | None:
        return self.job.cancel_reason

    def result(self, timeout: float | None = None) -> Any:
        return self.job.get(timeout)

    def cancel(self, *, reason: str = "cancelled") -> bool:
        return self.job.cancel(reason=reason)


class TaskTableModel(QAbstractTableModel):
    """A table of tasks (one row each): name, pool, state, progress, elapsed, outcome.

    Lives on the GUI thread.  Pair it with :class:`ProgressBarDelegate` on the progress
    column (``PROGRESS_COLUMN``) for bars.

    Args:
        manager: Whose tasks to show (from now on); None to :meth:`add` rows yourself.
        parent: Optional QObject parent.
        max_rows: Finished rows beyond this count are dropped, oldest first.
        refresh_ms: How often the model refreshes (it also refreshes on :meth:`refresh`).

    Example:
        >>> model = TaskTableModel(manager)                        # doctest: +SKIP
        >>> view = QTableView(); view.setModel(model)              # doctest: +SKIP
        >>> view.setItemDelegateForColumn(model.PROGRESS_COLUMN, ProgressBarDelegate(view))
    """

    COLUMNS = ("Task", "Pool", "State", "Progress", "Elapsed", "Outcome")
    NAME_COLUMN, POOL_COLUMN, STATE_COLUMN, PROGRESS_COLUMN, ELAPSED_COLUMN, OUTCOME_COLUMN = (
        range(6)
    )
    #: ``(current, total)`` or None, on every column.
    ProgressRole = Qt.ItemDataRole.UserRole + 1
    #: The task object itself.
    TaskRole = Qt.ItemDataRole.UserRole + 2
    #: The formatted traceback of a failed task, else None.
    TracebackRole = Qt.ItemDataRole.UserRole + 3

    def __init__(
        self,
        manager: WorkerManager | None = None,
        parent: QObject | None = None,
        *,
        max_rows: int = 2000,
        refresh_ms: int = 200,
    ) -> None:
        super().__init__(parent)
        self._rows: list[Any] = []
        self._snapshots: list[tuple[object, ...]] = []
        self._max_rows = max(1, max_rows)
        self._manager = manager
        self._incoming: deque[Any] = manager.watch_tasks() if manager is not None else deque()
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        #: How many refreshes changed something (for tests and the demo's counters).
        self.batches = 0

    # -- feeding ------------------------------------------------------------------------

    def add(self, task: TaskLike) -> None:
        """Show ``task`` (any :class:`TaskLike`, e.g. a long job) from the next refresh."""
        self._incoming.append(task)

    def refresh(self) -> None:
        """Apply everything that happened since the last refresh, in three signals at most.

        Runs on the GUI thread (the model's timer calls it).
        """
        changed = False
        incoming = self._incoming
        if incoming:
            new = [incoming.popleft() for _ in range(len(incoming))]
            new = [_JobRow(t) if isinstance(t, LongJob) else t for t in new]
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self._rows.extend(new)
            self._snapshots.extend(_snapshot(task) for task in new)
            self.endInsertRows()
            changed = True
        changed |= self._trim()
        low, high = -1, -1
        snapshots = self._snapshots
        for row, task in enumerate(self._rows):
            snap = _snapshot(task)
            if snap != snapshots[row]:
                snapshots[row] = snap
                if low < 0:
                    low = row
                high = row
        if low >= 0:
            self.dataChanged.emit(self.index(low, 0), self.index(high, len(self.COLUMNS) - 1))
            changed = True
        if changed:
            self.batches += 1

    def _trim(self) -> bool:
        excess = len(self._rows) - self._max_rows
        if excess <= 0:
            return False
        count = 0
        for task in self._rows:
            if count == excess or not task.state.is_terminal:
                break
            count += 1
        if count == 0:
            return False
        self.beginRemoveRows(QModelIndex(), 0, count - 1)
        del self._rows[:count]
        del self._snapshots[:count]
        self.endRemoveRows()
        return True

    def clear_finished(self) -> None:
        """Remove every finished row."""
        keep = [i for i, task in enumerate(self._rows) if not task.state.is_terminal]
        self.beginResetModel()
        self._rows = [self._rows[i] for i in keep]
        self._snapshots = [self._snapshots[i] for i in keep]
        self.endResetModel()

    def detach(self) -> None:
        """Stop following the manager (the rows stay)."""
        self._timer.stop()
        if self._manager is not None:
            self._manager.unwatch_tasks(self._incoming)
            self._manager = None

    # -- actions ------------------------------------------------------------------------

    def task_at(self, row: int) -> Any:
        """The task (or long job) shown in ``row``."""
        task = self._rows[row]
        return task.job if isinstance(task, _JobRow) else task

    def cancel_row(self, row: int) -> bool:
        """Cancel the task in ``row``; True if that cancelled it."""
        return bool(self._rows[row].cancel())

    def cancel_all(self) -> int:
        """Cancel every task shown that has not ended; return how many were cancelled."""
        return sum(bool(task.cancel()) for task in self._rows if not task.state.is_terminal)

    # -- QAbstractTableModel ---------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        """Number of tasks shown."""
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        """Number of columns (``COLUMNS``)."""
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        """Column titles."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Cell contents for ``role``.  GUI thread."""
        if not index.isValid():
            return None
        task = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(task, column)
        if role == self.ProgressRole:
            return task.progress_value
        if role == self.TaskRole:
            return task.job if isinstance(task, _JobRow) else task
        if role == self.TracebackRole or (
            role == Qt.ItemDataRole.ToolTipRole and column == self.OUTCOME_COLUMN
        ):
            failure = getattr(task, "failure", None)
            return failure.traceback if failure is not None else None
        if role == Qt.ItemDataRole.ForegroundRole and column == self.STATE_COLUMN:
            return QBrush(QColor(_STATE_COLORS[task.state]))
        if role == Qt.ItemDataRole.TextAlignmentRole and column == self.ELAPSED_COLUMN:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _snapshot(task: Any) -> tuple[object, ...]:
    state = task.state
    elapsed = round(task.elapsed, 1) if state is TaskState.RUNNING else None
    return (state, task.progress_value, getattr(task, "status_text", None), elapsed)


def _display(task: Any, column: int) -> str:
    if column == 0:
        return str(task.name)
    if column == 1:
        return task.pool or ""
    state = task.state
    if column == 2:
        return str(state.value)
    if column == 3:
        progress = task.progress_value
        if progress is None:
            return ""
        current, total = progress
        return f"{current}/{total}" if total > 0 else str(current)
    if column == 4:
        elapsed = task.elapsed
        return f"{elapsed:.1f} s" if elapsed else ""
    if state is TaskState.SUCCEEDED:
        return _short.repr(task.result(0))
    if state is TaskState.FAILED:
        failure = getattr(task, "failure", None)
        return str(failure) if failure is not None else "failed"
    if state is TaskState.CANCELLED:
        reason = getattr(task, "cancel_reason", None)
        return "cancelled" if reason in (None, "cancelled") else f"cancelled: {reason}"
    status = getattr(task, "status_text", None)
    return status or ""
