"""Temperature scaling on a run trained on real photos: fitted on validation, stored in best.pt, used to predict."""

import json

import numpy as np
import pytest
from helpers import network_logits, read_csv

from foldertune.analysis.calibration import PRIOR_SCALE, expected_calibration_error, fit_temperature, nll, softmax
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
    for nearby in (temperature * 1.2, temperature / 1.2):  # a minimum of the log loss and the prior, not just below 1
        assert penalised_loss(logits, targets, temperature) <= penalised_loss(logits, targets, nearby)
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


def penalised_loss(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    return len(targets) * nll(logits, targets, temperature) + np.log(temperature) ** 2 / (2 * PRIOR_SCALE**2)


def drawn(count: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of 4 classes and labels drawn from softmax(logits / temperature): the true temperature is known."""
    generator = np.random.default_rng(seed)
    logits = generator.normal(scale=4.0, size=(count, 4))
    targets = np.array([generator.choice(4, p=row) for row in softmax(logits, temperature)])
    return logits, targets


def test_many_images_find_the_true_temperature_and_a_few_stay_near_one():
    for true in (0.6, 2.0):
        logits, targets = drawn(4000, true)
        assert fit_temperature(logits, targets) == pytest.approx(true, rel=0.06)
    logits, targets = drawn(6, 2.0)
    plain = min(np.exp(np.linspace(-np.log(10), np.log(10), 2001)), key=lambda t: nll(logits, targets, t))
    fitted = fit_temperature(logits, targets)
    assert abs(np.log(fitted)) < abs(np.log(plain)) and abs(np.log(fitted)) < 2 * PRIOR_SCALE


def test_a_validation_split_without_a_mistake_sharpens_only_a_little():
    logits = np.array([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    assert 0.8 < fit_temperature(logits, np.array([0, 0, 1])) < 1.0  # the log loss alone would drive T to 0
    assert fit_temperature(logits, np.array([0, 1, 1])) > 1.0  # a confident mistake: soften
    assert fit_temperature(logits[:0], np.array([], dtype=int)) == 1.0
