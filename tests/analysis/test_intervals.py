"""95% intervals (Wilson, seeded bootstrap) and McNemar's test: by hand, and on a run trained on real photos."""

import json

import numpy as np
import pytest
from helpers import read_csv

import foldertune as ft
from foldertune.analysis.intervals import bootstrap_intervals, mcnemar, wilson_interval
from foldertune.analysis.metrics import averages


def test_wilson_and_mcnemar_match_hand_computed_values():
    low, high = wilson_interval(26, 28)  # the sample demo's 0.929 on 28 images
    assert (round(low, 3), round(high, 3)) == (0.774, 0.980)
    assert wilson_interval(28, 28)[1] == 1.0 and wilson_interval(0, 28)[0] == 0.0
    differ = mcnemar([True] * 7 + [False], [False] * 8)  # 7 right only by A, none only by B: 2 x 0.5^7
    assert differ["p_value"] == pytest.approx(2 * 0.5**7) and differ["differ"]
    assert not mcnemar([True, False], [True, False])["differ"]


def test_the_bootstrap_is_seeded_and_brackets_the_score():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 5, 60)
    predictions = np.where(rng.random(60) < 0.7, targets, rng.integers(0, 5, 60))
    first, again = bootstrap_intervals(targets, predictions), bootstrap_intervals(targets, predictions)
    assert first == again != bootstrap_intervals(targets, predictions, seed=1)
    _, recall, f1 = averages(targets, predictions, "macro")
    assert first["balanced_accuracy"][0] < recall < first["balanced_accuracy"][1]
    assert first["macro_f1"][0] < f1 < first["macro_f1"][1]


def test_every_interval_holds_its_score_and_narrows_with_more_images(chinese_run, tmp_path):
    run, data = chinese_run
    val = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["val"]
    assert val["images"] == 6
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert val[f"{key}_low"] <= val[key] <= val[f"{key}_high"], key
    for row in read_csv(run / "epochs.csv"):
        assert float(row["val_acc_low"]) <= float(row["val_acc"]) <= float(row["val_acc_high"])
    every = ft.evaluate(run, data, out=tmp_path / "all", no_figures=True, quiet=True, log=lambda *_: None)
    overall = json.loads((every / "metrics.json").read_text(encoding="utf-8"))["overall"]
    assert overall["images"] == 24
    assert overall["accuracy_low"] <= overall["accuracy"] <= overall["accuracy_high"]
    assert overall["accuracy_high"] - overall["accuracy_low"] < val["accuracy_high"] - val["accuracy_low"]
    assert overall["macro_f1_high"] - overall["macro_f1_low"] < val["macro_f1_high"] - val["macro_f1_low"]
