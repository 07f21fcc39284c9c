"""Widgets of the demo: a panel per pool with a live plot, and a responsiveness meter."""

from __future__ import annotations

import time
from collections import deque
from typing import ClassVar

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from casare_workers import PoolStatistics

__all__ = ("PoolPanel", "StallMeter")

#: Seconds of history in each plot.
HISTORY = 60.0

# No antialiasing: the plots redraw a few times a second and must stay cheap for the GUI.
pg.setConfigOptions(antialias=False, background="w", foreground="#444")


class PoolPanel(QGroupBox):
    """Counters and a one-minute plot (busy workers, queued tasks, throughput) of a pool.

    The plot is kept cheap on purpose (one axis, no legend, no grid): pyqtgraph draws
    axes and legends in Python on the GUI thread, and six panels redrawing them cost
    more than a frame.  The curves' colours are those of the counters' captions; the
    throughput curve is scaled to the plot's height (its value is in "per s").
    """

    FIELDS = ("max", "busy", "queued", "done", "failed", "cancelled", "per s")
    CURVES: ClassVar[dict[str, str]] = {"busy": "#1565c0", "queued": "#ef6c00", "per s": "#2e7d32"}

    def __init__(
        self,
        name: str,
        kind: str,
        parent: QWidget | None = None,
        captions: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(f"{name}  ·  {kind}", parent)
        self.setObjectName(f"pool-{name}")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(0)
        self.values: dict[str, QLabel] = {}
        for column, field in enumerate(self.FIELDS):
            text = captions[column] if captions is not None else field
            caption = QLabel(text)
            color = self.CURVES.get(field, "#777")
            caption.setStyleSheet(f"color: {color}; font-size: 10px;")
            value = QLabel("0")
            value.setStyleSheet("font-weight: 600; font-size: 13px;")
            value.setMinimumWidth(36)
            grid.addWidget(caption, 0, column, Qt.AlignmentFlag.AlignLeft)
            grid.addWidget(value, 1, column, Qt.AlignmentFlag.AlignLeft)
            self.values[field] = value
        layout.addLayout(grid)
        self.plot = pg.PlotWidget()
        self.plot.setFixedHeight(110)
        self.plot.setXRange(-HISTORY, 0, padding=0)
        self.plot.hideAxis("bottom")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setToolTip("the last minute")
        layout.addWidget(self.plot)
        self._busy = self.plot.plot(pen=pg.mkPen(self.CURVES["busy"], width=2))
        self._queued = self.plot.plot(pen=pg.mkPen(self.CURVES["queued"], width=2))
        self._throughput = self.plot.plot(
            pen=pg.mkPen(self.CURVES["per s"], width=1.5, style=Qt.PenStyle.DashLine)
        )
        self._history: deque[tuple[float, int, int, float]] = deque()

    def update_statistics(self, stats: PoolStatistics, now: float | None = None) -> None:
        """Show the counters and record a plot sample (cheap; no redraw).  GUI thread."""
        now = time.monotonic() if now is None else now
        values = (
            stats.max_workers,
            stats.busy,
            stats.queued,
            stats.succeeded,
            stats.failed,
            stats.cancelled,
            f"{stats.throughput:.0f}",
        )
        for field, value in zip(self.FIELDS, values, strict=True):
            self.values[field].setText(str(value))
        history = self._history
        history.append((now, stats.busy, stats.queued, stats.throughput))
        while history and now - history[0][0] > HISTORY:
            history.popleft()

    def redraw(self, now: float | None = None) -> None:
        """Redraw the plot from the recorded samples.  GUI thread.

        A pyqtgraph redraw costs several milliseconds, so the window redraws one panel
        per tick instead of all at once (each stall stays well under a frame).
        """
        if not self._history:
            return
        now = time.monotonic() if now is None else now
        data = np.array(self._history, dtype=float)
        x = data[:, 0] - now
        top = max(1.0, float(data[:, 1:3].max()) * 1.1)
        peak = float(data[:, 3].max())
        self._busy.setData(x, data[:, 1])
        self._queued.setData(x, data[:, 2])
        self._throughput.setData(x, data[:, 3] * (top / peak) if peak > 0 else data[:, 3])
        self.plot.setYRange(0, top, padding=0)


class StallMeter(QLabel):
    """The worst event-loop stall of the last few seconds, measured with a 10 ms timer.

    Green up to one frame (16 ms), amber up to 50 ms, red beyond.
    """

    INTERVAL_MS = 10
    WINDOW = 3.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stall-meter")
        self.setMinimumWidth(230)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        self._last = time.perf_counter()
        self._stalls: deque[tuple[float, float]] = deque()
        self.worst_ms = 0.0
        self._timer.start()
        self._show()

    def worst_since(self, since: float) -> float:
        """The worst stall (ms) since ``since`` (a ``time.perf_counter()`` value).

        Only the last :attr:`WINDOW` seconds are remembered.
        """
        self._tick()
        return max((stall for at, stall in self._stalls if at >= since), default=0.0)

    def _tick(self) -> None:
        now = time.perf_counter()
        stall = max(0.0, (now - self._last) * 1000 - self.INTERVAL_MS)
        self._last = now
        stalls = self._stalls
        stalls.append((now, stall))
        while stalls and now - stalls[0][0] > self.WINDOW:
            stalls.popleft()
        worst = max(s for _, s in stalls)
        if abs(worst - self.worst_ms) >= 0.5:
            self.worst_ms = worst
            self._show()

    def _show(self) -> None:
        worst = self.worst_ms
        color = "#2e7d32" if worst <= 16 else ("#ef6c00" if worst <= 50 else "#c62828")
        self.setText(f"GUI stall (worst, last {self.WINDOW:.0f} s): {worst:.0f} ms")
        self.setStyleSheet(
            f"QLabel {{ background: {color}; color: white; border-radius: 4px;"
            " padding: 4px 10px; font-weight: 600; }"
        )
