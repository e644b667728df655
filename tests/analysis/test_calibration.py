"""Temperature scaling on a run trained on real photos: fitted on validation, stored in best.pt, used to predict."""

import json

import numpy as np
import pytest
from helpers import network_logits, read_csv

from foldertune.analysis.calibration import expected_calibration_error, fit_temperature, nll, softmax
from foldertune.inference.classifier import Classifier
from foldertune.runs.checkpoint import load_checkpoint, save_checkpoint


def test_the_temperature_lowers_validation_nll_and_predictions_divide_the_logits_by_it(chinese_run, tmp_path):
    run, _ = chinese_run
    checkpoint = load_checkpoint(run)
    temperature = checkpoint["temperature"]
    val = [row for row in read_csv(run / "split.csv") if row["split"] == "val"]
    classes = checkpoint["classes"]
    paths, targets = [row["path"] for row in val], np.array([classes.index(row["class"]) for row in val])
    logits = network_logits(checkpoint, paths)
    assert temperature != 1.0 and fit_temperature(logits, targets) == pytest.approx(temperature, rel=1e-3)
    assert nll(logits, targets, temperature) < nll(logits, targets)
    for nearby in (temperature * 1.2, temperature / 1.2):  # a minimum, not just better than 1
        assert nll(logits, targets, temperature) <= nll(logits, targets, nearby)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["val"]
    assert metrics["temperature"] == pytest.approx(temperature)
    assert metrics["ece"] == pytest.approx(expected_calibration_error(softmax(logits, temperature), targets), abs=1e-5)
    assert metrics["ece_before"] == pytest.approx(expected_calibration_error(softmax(logits), targets), abs=1e-5)

    predictions = Classifier(checkpoint, device="cpu").predict(paths, topk=len(classes))
    for prediction, expected in zip(predictions, softmax(logits, temperature), strict=True):
        assert dict(prediction.topk) == pytest.approx(dict(zip(classes, expected, strict=True)), abs=1e-5)

    del checkpoint["temperature"]  # a checkpoint written before calibration predicts with T = 1
    save_checkpoint(tmp_path / "old.pt", checkpoint)
    old = Classifier.from_path(tmp_path / "old.pt", device="cpu").predict(paths[:2], topk=len(classes))
    for prediction, expected in zip(old, softmax(logits[:2]), strict=True):
        assert dict(prediction.topk) == pytest.approx(dict(zip(classes, expected, strict=True)), abs=1e-5)


def test_a_validation_split_without_a_mistake_keeps_the_temperature_at_one():
    logits = np.array([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    assert fit_temperature(logits, np.array([0, 0, 1])) == 1.0  # every one right: the loss would fall as T -> 0
    assert fit_temperature(logits, np.array([0, 1, 1])) > 1.0  # a confident mistake: soften
