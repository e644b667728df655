"""Image grids: what training sees after augmentation, validation predictions, top losses and Grad-CAM maps.

    plot_train_batch(run)        # run/plots/train_batch.png: 16 augmented training images with their classes
    plot_predictions(eval_dir)   # predictions.png: true / predicted / confidence, mistakes framed in red
    plot_top_losses(eval_dir)    # top_losses.png: the most confidently wrong images, with their file names
    plot_cams(eval_dir)          # cam_gallery.png: Grad-CAM overlays of right and wrong predictions

The pictures are the network's own input (after resize, crop and augmentation), shown before normalisation:
the same as denormalising the tensors, without the round trip.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from foldertune.data.images import ImageReadError
from foldertune.data.readers import EvalReader, TrainReader
from foldertune.preprocessing import Preprocessing
from foldertune.reporting.plots.common import DPI, RIGHT, WRONG, new_figure, save, shorten
from foldertune.runs.folder import EvalFolder, RunFolder
from foldertune.runs.tables import read_table

GRID = 16  # pictures per grid
COLUMNS = 4
MIN_CELL_INCHES = 2.2  # a picture and its margin: small crops are enlarged to this width
CAPTION_POINTS = 8


def plot_train_batch(run: Path, *, fmt: str = "png", seed: int = 0) -> Path | None:
    folder = RunFolder(run)
    pre = Preprocessing.from_dict(folder.config()["resolved"]["preprocessing"])
    rows = [row for row in folder.split_rows() if row["split"] == "train"]
    rows = random.Random(seed).sample(rows, min(GRID, len(rows)))
    augment = folder.config()["settings"]["train"].get("augment", "standard")  # absent from older runs' config
    read = TrainReader(pre, augment=augment)  # exactly what training reads
    torch.manual_seed(seed)
    items = []
    for row in rows:
        picture = _load(row["path"], read)
        if picture is not None:
            items.append((picture, row["class"], None))
    if not items:
        return None
    return _grid(items, "Training images after augmentation", folder.plots_dir / "train_batch", fmt)


def plot_predictions(eval_dir: Path, *, fmt: str = "png", seed: int = 0) -> Path | None:
    rows = [row for row in read_table(eval_dir / "predictions.csv") if row["predicted"]]
    chosen = random.Random(seed).sample(rows, min(GRID, len(rows)))
    chosen.sort(key=lambda row: row["correct"] == "1")  # mistakes first
    return _prediction_grid(eval_dir, chosen, "Predictions (red: wrong)", "predictions", fmt)


def plot_top_losses(eval_dir: Path, *, fmt: str = "png") -> Path | None:
    """The wrong predictions the network was surest of: often mislabelled or ambiguous images."""
    wrong = [row for row in read_table(eval_dir / "predictions.csv") if row["predicted"] and row["correct"] == "0"]
    wrong.sort(key=lambda row: -float(row["loss"]))
    if not wrong:
        return None
    return _prediction_grid(eval_dir, wrong[:GRID], "Most confidently wrong (top losses)", "top_losses", fmt,
                            with_path=True)  # fmt: skip


def plot_cams(eval_dir: Path, *, fmt: str = "png") -> Path | None:
    index = eval_dir / "cams" / "cams.csv"
    if not index.exists():
        return None
    items = []
    for row in read_table(index):
        picture = np.asarray(Image.open(eval_dir / "cams" / row["file"]).convert("RGB"))
        caption = (
            f"true {shorten(row['true'], 16)}\npred {shorten(row['predicted'], 16)} {float(row['confidence']):.2f}"
        )
        items.append((picture, caption, row["true"] != row["predicted"]))
    if not items:
        return None
    return _grid(items, "Grad-CAM: where the network looked (for its predicted class)", eval_dir / "cam_gallery", fmt)


def save_explanation(explanation, path: Path, *, title: str) -> Path:
    """The crop and its Grad-CAM overlay side by side, titled with the file and the class explained."""
    fig, (left, right) = new_figure(labels=[explanation.label, explanation.predicted, title], size=(7, 3.8), ncols=2)
    left.imshow(explanation.image)
    left.set_title(shorten(title, 40), fontsize=9)
    right.imshow(explanation.overlay)
    right.set_title(f"Grad-CAM for {explanation.label} ({explanation.probability:.2f})", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    return save(fig, path.with_suffix(""), fmt=path.suffix.lstrip(".") or "png")


def _prediction_grid(eval_dir: Path, rows, title: str, stem: str, fmt: str, *, with_path: bool = False):
    metrics = EvalFolder(eval_dir).metrics()
    pre = Preprocessing.from_dict(metrics["preprocessing"])
    read = EvalReader(pre)
    items = []
    for row in rows:
        picture = _load(row["path"], read)
        if picture is None:
            continue
        caption = (
            f"true {shorten(row['true'], 16)}\npred {shorten(row['predicted'], 16)} {float(row['confidence']):.2f}"
        )
        if with_path:
            caption += f"\n{shorten(Path(row['path']).parent.name + '/' + Path(row['path']).name, 28)}"
        items.append((picture, caption, row["correct"] == "0"))
    if not items:
        return None
    return _grid(items, title, eval_dir / stem, fmt)


def _load(path: str, read) -> np.ndarray | None:
    try:
        return read(path).permute(1, 2, 0).numpy()
    except ImageReadError:
        return None  # gone or damaged since the run: leave it out of the picture


def _grid(items: list[tuple[np.ndarray, str, bool | None]], title: str, stem: Path, fmt: str) -> Path:
    """Pictures with captions; a caption flagged wrong is red and its picture framed in red. The pictures are pasted
    into one mosaic drawn on one axes: a figure of sixteen small axes takes several times longer to draw."""
    rows = -(-len(items) // COLUMNS)
    columns = min(COLUMNS, len(items))
    side = max(max(picture.shape[:2]) for picture, _, _ in items)
    pad = max(4, side // 12)  # pixels between pictures, and room for a frame
    inches_per_pixel = max(1 / DPI, MIN_CELL_INCHES / (side + pad))  # a picture's pixels drawn 1:1 where they fit
    lines = max(caption.count("\n") + 1 for _, caption, _ in items)
    caption = int(np.ceil(lines * CAPTION_POINTS * 1.35 / 72 / inches_per_pixel))  # pixels above each picture
    cell_width, cell_height = side + pad, side + caption + pad
    mosaic = np.full((rows * cell_height, columns * cell_width, 3), 255, dtype=np.uint8)
    width, height = columns * cell_width * inches_per_pixel, rows * cell_height * inches_per_pixel
    fig, ax = new_figure(labels=[text for _, text, _ in items], size=(width, height + 0.45))
    ax.set_position((0, 0, 1, height / (height + 0.45)))  # the title above the mosaic
    frame = max(2, pad // 3)
    for i, (picture, text, wrong) in enumerate(items):
        row, column = divmod(i, COLUMNS)
        h, w = picture.shape[:2]
        top = row * cell_height + caption + (side - h) // 2 + pad // 2
        left = column * cell_width + (side - w) // 2 + pad // 2
        if wrong:
            mosaic[top - frame : top + h + frame, left - frame : left + w + frame] = _rgb(WRONG)
        mosaic[top : top + h, left : left + w] = picture[..., :3]
        colour = WRONG if wrong else RIGHT if wrong is False else "black"
        ax.text(left + w / 2, top - frame - 2, text, ha="center", va="bottom", fontsize=CAPTION_POINTS, color=colour)
    ax.imshow(mosaic, interpolation="none" if inches_per_pixel * DPI == 1 else "antialiased")
    ax.axis("off")
    fig.suptitle(title, y=1 - 0.1 / (height + 0.45))
    return save(fig, stem, fmt=fmt, photos=True, tight=False)  # the layout is exact: one drawing, not two


def _rgb(colour: str) -> tuple[int, int, int]:
    """'#c62828' -> (198, 40, 40)."""
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
