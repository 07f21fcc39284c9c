"""``ProgressBarDelegate``: paints a ``(current, total)`` progress value as a progress bar."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

__all__ = ("ProgressBarDelegate",)

# QStyleOptionProgressBar holds C ints: scale large totals (byte counts) into this range.
_SCALE = 1_000_000


class ProgressBarDelegate(QStyledItemDelegate):
    """Draws the ``ProgressRole`` of a cell as a progress bar (any ``QTableView``).

    ``total <= 0`` (unknown) draws a busy bar.  Cells without progress are drawn as usual.
    Runs on the GUI thread.

    Args:
        parent: The view, usually.
        role: The item-data role holding ``(current, total)`` (default: the
            ``TaskTableModel.ProgressRole``).

    Example:
        >>> view.setItemDelegateForColumn(model.PROGRESS_COLUMN, ProgressBarDelegate(view))
    """

    def __init__(self, parent: object = None, role: int | None = None) -> None:
        super().__init__(parent)  # type: ignore[arg-type]
        self._role = role if role is not None else Qt.ItemDataRole.UserRole + 1

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        """Paint the bar (GUI thread)."""
        progress = index.data(self._role)
        if not progress:
            super().paint(painter, option, index)
            return
        current, total = progress
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        bar.minimum = 0
        if total > 0:
            bar.maximum = _SCALE
            bar.progress = max(0, min(_SCALE, round(current * _SCALE / total)))
            bar.text = f"{min(100, current * 100 // total)}%"
        else:  # unknown total: Qt draws a busy indicator for min == max == 0
            bar.maximum = 0
            bar.progress = 0
            bar.text = str(current)
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
