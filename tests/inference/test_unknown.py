"""'unknown' below --min-confidence, the unknown_score and --tta, on a run trained through the real CLI."""

import json

import numpy as np
import torch
from helpers import SAMPLE, read_csv, run_cli

import foldertune as ft
from foldertune.inference.unknown import (
    LABELS_KEY,
    REFERENCE_KEY,
    SCALE_KEY,
    class_statistics,
    energy_score,
    mahalanobis_distance,
)
from foldertune.runs.checkpoint import load_checkpoint


def test_below_min_confidence_the_label_is_unknown_and_the_top_class_stays_beside_it(chinese_run, tmp_path):
    run, _ = chinese_run
    classifier = ft.load(run, device="cpu")
    val = [row["path"] for row in read_csv(run / "split.csv") if row["split"] == "val"]
    plain = classifier.predict(val)
    threshold = float(np.median([p.probability for p in plain]))
    cut = classifier.predict(val, min_confidence=threshold)
    assert {p.label for p in cut if p.probability < threshold} == {"unknown"}
    assert all(p.label == p.top_label for p in cut if p.probability >= threshold)
    assert [(p.top_label, p.probability) for p in cut] == [(p.label, p.probability) for p in plain]
    assert "unknown" not in {p.label for p in classifier.predict(val, min_confidence=0.0)}

    out = tmp_path / "preds.csv"
    done = run_cli("predict", str(run), *val, "--min-confidence", repr(threshold), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    rows = read_csv(out)
    assert list(rows[0])[:5] == ["path", "label", "probability", "top_label", "unknown_score"]
    assert [row["label"] for row in rows] == [p.label for p in cut]
    assert [row["top_label"] for row in rows] == [p.top_label for p in cut]
    assert np.allclose([float(row["unknown_score"]) for row in rows], [p.unknown_score for p in cut], atol=1e-5)


def test_the_unknown_score_combines_the_class_distance_to_the_stored_training_features_and_the_energy(chinese_run):
    run, _ = chinese_run
    checkpoint = load_checkpoint(run)
    reference, labels, scale = checkpoint[REFERENCE_KEY], checkpoint[LABELS_KEY], checkpoint[SCALE_KEY].numpy()
    split = read_csv(run / "split.csv")
    train = [row for row in split if row["split"] == "train"]
    assert reference.dtype == torch.float16 and reference.shape == (len(train), 1280)  # below the limit: every one
    classes = checkpoint["classes"]
    assert sorted(labels.tolist()) == sorted(classes.index(row["class"]) for row in train)
    assert np.isfinite(scale).all() and scale[1] > 0 and scale[3] > 0
    means, precision = class_statistics(reference.float().numpy(), labels.numpy())
    unit = reference.float().numpy() / np.linalg.norm(reference.float().numpy(), axis=1, keepdims=True)
    first = unit[labels.numpy() == 0]
    assert means.shape == (len(classes), 1280) and np.allclose(means[0], first.mean(axis=0), atol=1e-5)
    assert np.allclose(precision, precision.T, rtol=1e-3, atol=1e-3 * np.abs(precision).max())
    classifier = ft.load(run, device="cpu")
    photos = [
        *[row["path"] for row in split if row["split"] == "val"],
        *sorted((SAMPLE / "renewable").glob("*.webp"))[:4],
    ]  # fmt: skip  (a class the run never saw)
    _, logits, features = classifier.outputs(next(classifier.load_batches(photos, progress=False))[2])
    distance = mahalanobis_distance(features, means, precision)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)  # (u - m).P.(u - m), nearest class
    direct = np.min([np.einsum("nd,de,ne->n", unit - mean, precision, unit - mean) for mean in means], axis=0)
    assert np.allclose(distance, direct, rtol=1e-4)
    expected = (distance - scale[0]) / scale[1] + (energy_score(logits) - scale[2]) / scale[3]
    scores = [p.unknown_score for p in classifier.predict(photos)]
    assert np.allclose(scores, expected, atol=1e-4) and np.isfinite(scores).all()
    # a run of 2 epochs at 64 px does not tell the unseen class apart reliably: bench/trust_unknown.py measures


def test_tta_averages_the_probabilities_of_the_image_and_its_mirror(chinese_run, tmp_path):
    run, _ = chinese_run
    classifier = ft.load(run, device="cpu")
    val = [row["path"] for row in read_csv(run / "split.csv") if row["split"] == "val"]
    images = next(classifier.load_batches(val, progress=False))[2]
    plain, mirrored = classifier.probabilities(images), classifier.probabilities(images.flip(-1))
    averaged = classifier.probabilities(images, tta=True)
    assert np.allclose(averaged, (plain + mirrored) / 2, atol=1e-6) and not np.allclose(averaged, plain, atol=1e-4)
    assert [p.probability for p in classifier.predict(val, tta=True)] == [float(row.max()) for row in averaged]
    out = ft.evaluate(run, out=tmp_path / "tta", tta=True, no_figures=True, quiet=True, log=lambda *_: None)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["tta"] is True and np.allclose(np.load(out / "scores.npy"), averaged, atol=1e-6)


def test_a_model_with_a_class_named_unknown_refuses_min_confidence():
    import pytest

    from foldertune.inference.prediction import check_predict_options

    check_predict_options(topk=1, min_confidence=0.5, classes=["cat", "dog"])
    check_predict_options(topk=1, classes=["cat", "unknown"])  # without a threshold the name is no problem
    with pytest.raises(ft.UserError, match=r"class named 'unknown'.*--min-confidence"):
        check_predict_options(topk=1, min_confidence=0.5, classes=["cat", "unknown"], flags=True)
