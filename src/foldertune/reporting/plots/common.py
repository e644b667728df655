"""What every figure shares: the headless backend, fonts for the labels, sizes, colours and saving.

fig, ax = new_figure(labels=classes, size=(7, 4))
...
save(fig, run / "plots" / "loss", fmt="png")     # -> run/plots/loss.png, figure closed
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
matplotlib.rcParams["text.parse_math"] = False  # a class named "$5_$10" is text, not a formula
# One warning names the labels a font cannot draw (fonts.use_fonts_for), not one per glyph and figure:
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from foldertune.reporting.plots.fonts import use_fonts_for  # noqa: E402
from foldertune.runs.folder import FIGURE_FORMATS  # noqa: E402

DPI = 110
RIGHT = "#2e7d32"  # green: correct predictions
WRONG = "#c62828"  # red: mistakes
TRAIN = "#1f77b4"
VAL = "#ff7f0e"


def new_figure(*, labels: Iterable[str] = (), size: tuple[float, float] = (7, 4), **subplots):
    """A figure whose text can draw every label given (CJK fonts switched on where needed)."""
    use_fonts_for(list(labels))
    fig, axes = plt.subplots(figsize=size, **subplots)
    return fig, axes


def save(fig, stem: Path, *, fmt: str = "png", photos: bool = False, tight: bool = True) -> Path:
    """Write `stem.<fmt>` and close the figure, cropped to its content unless not `tight` (cropping draws it twice).
    A PNG of `photos` is compressed less: zlib's default level spends 1 s on a grid of sixteen photos for 15% fewer
    bytes."""
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}")
    path = stem.with_name(f"{stem.name}.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"pil_kwargs": {"compress_level": 1}} if photos and fmt == "png" else {}
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None, **extra)
    plt.close(fig)
    return path


def cell_size(count: int, *, preferred: float, total: float = 37.0) -> float:
    """Inches per class on a figure that grows with the class count up to `total` inches, then packs tighter."""
    return min(preferred, total / max(count, 1))


def fit_font(cell_inches: float) -> float:
    """Font size (points) whose text fits in a row or column `cell_inches` wide, from 4 to 10 points."""
    return max(4.0, min(10.0, cell_inches * 72 * 0.55))


def shorten(text: str, limit: int = 24) -> str:
    """Long names cut in the middle, keeping both ends: 'a rather lo…me number 42'."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]
