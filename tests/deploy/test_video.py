"""Prediction on a real video made from the sample photos: every frame annotated, Chinese labels drawn as glyphs."""

import numpy as np
import pytest
from helpers import read_csv, run_cli
from PIL import Image, ImageFont

cv2 = pytest.importorskip("cv2", reason="the video extra is part of the dev install")

from foldertune.deploy.video import LabelDrawer  # noqa: E402
from foldertune.inference.classifier import Classifier  # noqa: E402
from foldertune.reporting.plots.fonts import font_file_for  # noqa: E402


def frames_of(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_every_frame_is_predicted_and_annotated(chinese_run, tmp_path):
    run, data = chinese_run
    photos = [sorted((data / name).iterdir())[0] for name in ("鱼", "纪念碑", "工具 箱")]
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for photo in photos:
        frame = np.asarray(Image.open(photo).convert("RGB").resize((320, 240)))
        for _ in range(4):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()

    out = tmp_path / "out" / "annotated.mp4"
    done = run_cli("predict", str(run), str(clip), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    originals, annotated = frames_of(clip), frames_of(out)
    assert len(originals) == len(annotated) == 12 and annotated[0].shape == (240, 320, 3)
    rows = read_csv(out.with_suffix(".csv"))
    expected = Classifier.from_path(run).predict([Image.fromarray(frame) for frame in originals], topk=1)
    assert [row["label"] for row in rows] == [p.label for p in expected]
    assert [float(row["probability"]) for row in rows] == pytest.approx([p.probability for p in expected], abs=1e-3)
    band = slice(0, 20)  # the label band darkens the top of every frame; the rest is the picture
    for before, after in zip(originals, annotated, strict=True):
        assert after[band].mean() < before[band].mean() - 20
        assert np.abs(after[120:].astype(int) - before[120:]).mean() < 6

    before = clip.read_bytes()  # the video as its own --out: refused even with --force, and left as it was
    done = run_cli("predict", str(run), str(clip), "--out", str(clip), "--force", "--quiet")
    assert done.returncode == 2 and "is the input" in done.stderr and "never replaces what it reads" in done.stderr
    assert clip.read_bytes() == before and not clip.with_suffix(".csv").exists()


def test_chinese_labels_are_drawn_with_glyphs_not_boxes():
    font = ImageFont.truetype(font_file_for(["鱼"]), 40)
    fish, missing = font.getmask("鱼"), font.getmask("\U000f0000")  # a private-use character: the 'no glyph' box
    assert np.asarray(fish).tobytes() != np.asarray(missing).tobytes()
    picture = LabelDrawer(["鱼"], 240)(Image.new("RGB", (320, 240), (0, 128, 0)), "鱼", 0.9)
    assert (np.asarray(picture)[:20] > 200).all(axis=2).sum() > 30  # white text in the band
