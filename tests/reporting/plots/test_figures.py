"""Figures stay legible with many classes, and `plot` regenerates every figure in each format."""

import itertools
import json
import shutil

import numpy as np

from foldertune.analysis.metrics import evaluation_report
from foldertune.reporting.plots import plot_run
from foldertune.reporting.plots.classification import plot_confusion, plot_per_class
from foldertune.runs.tables import write_table


def many_class_evaluation(folder, classes=120, images=3000):
    rng = np.random.default_rng(0)
    names = [f"类别{i}" if i % 2 else f"class number {i} with a long name" for i in range(classes)]
    targets = rng.integers(0, classes, images)
    logits = rng.normal(size=(images, classes))
    logits[np.arange(images), targets] += 2.5
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    predicted = probabilities.argmax(axis=1)
    report = evaluation_report(targets, probabilities, names)
    folder.mkdir(parents=True)
    rows = [{"path": "", "true": names[t], "predicted": names[p]} for t, p in zip(targets, predicted, strict=True)]
    write_table(folder / "predictions.csv", ["path", "true", "predicted"], rows)
    write_table(folder / "per_class.csv", list(report["per_class"][0]), report["per_class"])
    np.save(folder / "scores.npy", probabilities)
    (folder / "metrics.json").write_text(json.dumps({"classes": names}, ensure_ascii=False), encoding="utf-8")
    return names


def boxes_overlap(boxes) -> bool:
    return any(a.overlaps(b) for a, b in itertools.pairwise(boxes))


def test_confusion_matrix_with_120_classes_has_no_overlapping_labels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    many_class_evaluation(tmp_path / "eval")
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figures open to measure their text
    paths = plot_confusion(tmp_path / "eval")
    assert [p.name for p in paths] == ["confusion_matrix.png", "confusion_matrix_normalized.png"]
    fig = kept[0]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    x_boxes = [label.get_window_extent(renderer) for label in ax.get_xticklabels()]
    y_boxes = [label.get_window_extent(renderer) for label in ax.get_yticklabels()]
    assert len(x_boxes) == len(y_boxes) == 120
    assert not boxes_overlap(x_boxes) and not boxes_overlap(y_boxes)
    assert min(label.get_fontsize() for label in ax.get_xticklabels()) >= 6  # readable, not specks
    assert fig.get_size_inches()[0] > 20  # the figure grew with the classes


def test_per_class_bars_with_120_classes_have_no_overlapping_labels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    many_class_evaluation(tmp_path / "eval")
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    plot_per_class(tmp_path / "eval")
    fig = kept[0]
    renderer = fig.canvas.get_renderer()
    boxes = sorted((label.get_window_extent(renderer) for label in fig.axes[0].get_yticklabels()), key=lambda b: b.y0)
    assert len(boxes) == 120 and not boxes_overlap(boxes)


def test_plot_regenerates_every_figure_in_each_format(chinese_run, tmp_path):
    run = shutil.copytree(chinese_run[0], tmp_path / "run")
    expected_run = {"loss", "metrics", "train_batch"}
    expected_eval = {"confusion_matrix", "confusion_matrix_normalized", "per_class", "pr_curves", "roc_curves",
                     "reliability", "predictions", "cam_gallery", "feature_map"}  # fmt: skip
    for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")):
        written = plot_run(run, fmt=fmt)
        names = {p.stem for p in written if p.parent.name == "plots"}
        assert expected_run <= names, fmt
        assert expected_eval <= {p.stem for p in written if p.parent.name == "val"}, fmt
        assert all(p.suffix == f".{fmt}" and p.read_bytes().startswith(magic) for p in written), fmt
