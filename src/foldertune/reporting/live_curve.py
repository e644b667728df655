"""Training curves redrawn in place in a notebook cell while a run trains (`ft.train(..., live=True)`, the default in
Jupyter).

    curve = LiveCurve()
    curve.add_steps(rows)          # rows of batches.csv as they are logged
    curve.add_epoch(row, step)     # a row of epochs.csv, at the global step where the epoch ended
    curve.close()                  # the final picture, whatever the throttle says

Cheap by construction: a redraw happens at most every `interval` seconds, and never sooner than 50 times the last
redraw took, so drawing costs at most 2% of the training time. The picture is a PNG in one display slot that each
redraw replaces; nothing is written to the run folder.
"""

from __future__ import annotations

import io
import time
from typing import Any

INTERVAL = 3.0  # seconds between redraws, at least
COST_SHARE = 50  # wait at least this many times the last redraw's duration: drawing stays under 2% of the time


class LiveCurve:
    def __init__(self, *, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.steps: list[tuple[int, float, float]] = []  # step, train loss, train accuracy
        self.epochs: list[tuple[int, float, float]] = []  # step, val loss, val accuracy
        self.handle: Any = None  # IPython's display slot, made at the first redraw
        self.next_draw = 0.0
        self.redraws = 0

    def add_steps(self, rows: list[dict[str, Any]]) -> None:
        self.steps += [(int(row["step"]), float(row["loss"]), float(row["accuracy"])) for row in rows]
        self._maybe_draw()

    def add_epoch(self, row: dict[str, Any], step: int) -> None:
        self.epochs.append((step, float(row["val_loss"]), float(row["val_acc"])))
        self._maybe_draw()

    def close(self) -> None:
        if self.steps or self.epochs:
            self._draw()

    def _maybe_draw(self) -> None:
        if time.monotonic() >= self.next_draw:
            self._draw()

    def _draw(self) -> None:
        from IPython.display import Image, display

        started = time.monotonic()
        picture = Image(data=self.png(), format="png")
        if self.handle is None:
            self.handle = display(picture, display_id=True)
        else:
            self.handle.update(picture)
        self.redraws += 1
        now = time.monotonic()
        self.next_draw = now + max(self.interval, COST_SHARE * (now - started))

    def png(self) -> bytes:
        """The current curves: loss (left) and accuracy (right), train per logged step, validation per epoch."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 2.6), dpi=80, layout="constrained")  # no pyplot: nothing else is displayed
        FigureCanvasAgg(figure)
        loss, accuracy = figure.subplots(1, 2)
        for axes, column, title in ((loss, 1, "loss"), (accuracy, 2, "accuracy")):
            if self.steps:
                axes.plot(
                    [s[0] for s in self.steps], [s[column] for s in self.steps], color="#36c", lw=1, label="train"
                )
            if self.epochs:
                axes.plot([e[0] for e in self.epochs], [e[column] for e in self.epochs], "o-", color="#d62", ms=4,
                          label="validation")  # fmt: skip
            axes.set_title(title, fontsize=10)
            axes.set_xlabel("step", fontsize=9)
            axes.tick_params(labelsize=8)
            axes.grid(alpha=0.3)
        loss.legend(fontsize=8)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
