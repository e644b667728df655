"""Predict on every frame of a video (or a camera) and draw the top class and its probability on it (OpenCV).

    annotate_video(classifier, "clip.mp4", "annotated.mp4")   # also annotated.csv: frame, seconds, label, probability
    watch_camera(classifier, 0)                                # a window with the live prediction; q or Esc to quit

Frames go through the classifier's own preprocessing (the evaluation transform), in batches. Labels are drawn
with Pillow in a font that has the class names' characters (Chinese included), not with OpenCV's Latin-only text.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from foldertune.errors import UserError
from foldertune.notebook import tqdm

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
INSTALL = "pip install 'foldertune[video]' (OpenCV)"


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def annotate_video(
    classifier, source: str | os.PathLike, out: str | os.PathLike, *, batch_size: int = 16, progress: bool = True
) -> Path:
    """Write `out` (mp4) with the top-1 class drawn on each frame, and `out`.csv with one row per frame."""
    cv2 = _opencv()
    source, out = Path(source), Path(out)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out '{out}' must end in .mp4 for a video.")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise UserError(f"'{source}' cannot be opened as a video (missing, damaged, or a codec OpenCV lacks).")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    draw = LabelDrawer(classifier.classes, height)
    rows = []
    bar = tqdm(total=total, desc="frames", unit="frame", disable=None if progress else True, leave=False)
    try:
        while True:
            frames = []
            while len(frames) < batch_size:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(frame)
            if not frames:
                break
            pictures = [Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)) for frame in frames]
            for picture, prediction in zip(pictures, classifier.predict(pictures, topk=1), strict=True):
                rows.append({"frame": len(rows), "seconds": round(len(rows) / fps, 3), "label": prediction.label,
                             "probability": round(prediction.probability, 4)})  # fmt: skip
                annotated = draw(picture, prediction.label, prediction.probability)
                writer.write(cv2.cvtColor(np.asarray(annotated), cv2.COLOR_RGB2BGR))
            bar.update(len(frames))
    finally:
        bar.close()
        capture.release()
        writer.release()
    if not rows:
        out.unlink(missing_ok=True)
        raise UserError(f"'{source}' holds no frame OpenCV can read.")
    with open(out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as handle:
        table = csv.DictWriter(handle, fieldnames=["frame", "seconds", "label", "probability"], lineterminator="\n")
        table.writeheader()
        table.writerows(rows)
    return out


def watch_camera(classifier, camera: int) -> None:
    """Show camera `camera` live with the top-1 class drawn on each frame, until q or Esc."""
    cv2 = _opencv()
    capture = cv2.VideoCapture(camera)
    if not capture.isOpened():
        raise UserError(f"--camera {camera}: no camera with that number can be opened here.")
    draw = LabelDrawer(classifier.classes, int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or 480)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            picture = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            prediction = classifier.predict(picture, topk=1)
            annotated = draw(picture, prediction.label, prediction.probability)
            try:
                cv2.imshow("foldertune (q to quit)", cv2.cvtColor(np.asarray(annotated), cv2.COLOR_RGB2BGR))
            except cv2.error:
                raise UserError("this OpenCV has no windows (the headless build); pip install opencv-python.") from None
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    finally:
        capture.release()
        cv2.destroyAllWindows()


class LabelDrawer:
    """Draws "label 97.3%" on a dark band at the top of a frame, in a font that has the labels' characters."""

    def __init__(self, classes: list[str], height: int) -> None:
        from foldertune.reporting.plots.fonts import font_file_for  # matplotlib's font list: only when drawing

        self.size = max(14, height // 18)
        self.font = ImageFont.truetype(font_file_for(classes), self.size)

    def __call__(self, picture: Image.Image, label: str, probability: float) -> Image.Image:
        picture = picture.convert("RGBA")
        band = Image.new("RGBA", picture.size, (0, 0, 0, 0))
        pen = ImageDraw.Draw(band)
        text = f"{label}  {100 * probability:.1f}%"
        pen.rectangle((0, 0, picture.width, int(self.size * 1.6)), fill=(0, 0, 0, 160))
        pen.text((self.size // 2, self.size // 4), text, font=self.font, fill=(255, 255, 255, 255))
        return Image.alpha_composite(picture, band).convert("RGB")


def _opencv():
    try:
        import cv2
    except ImportError:
        raise UserError(f"video and camera prediction need OpenCV: {INSTALL}.") from None
    return cv2
