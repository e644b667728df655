"""The learning-rate range test: `ft.lr_find` / `foldertune lr-find`, and `train --lr auto`."""

import json
import math

import pytest
import torch
from helpers import read_csv

import foldertune as ft
from foldertune.config import RunConfig
from foldertune.device import choose_runtime
from foldertune.models.build import build_model
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.training.prepare import prepare_data
from foldertune.training.range_test import minimum_tenth, range_test, steepest, valley, zero_lag

TINY = {"img_size": 32, "batch_size": 8, "workers": 0, "precision": "fp32"}


def test_the_rules_read_a_loss_curve_as_described():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]  # 1e-7 .. 10
    # flat until 1e-4, falling until 1e-1, then climbing: the valley lies in the fall
    losses = [2.0 if lr < 1e-4 else 2.0 - 0.5 * math.log10(lr / 1e-4) if lr < 1e-1 else 0.5 + (lr - 0.1) for lr in lrs]
    assert 1e-4 < valley(lrs, losses) < 1e-1
    assert 1e-4 <= steepest(lrs, losses) < 1e-1
    assert minimum_tenth(lrs, losses) == pytest.approx(lrs[losses.index(min(losses))] / 10)
    smooth = zero_lag(losses)
    assert abs(smooth.index(min(smooth)) - losses.index(min(losses))) <= 2, "no delay"


def test_lr_find_sweeps_plots_restores_the_network_and_feeds_train_lr_auto(small_dataset, tmp_path,
                                                                           mobilenet_weights, capsys):  # fmt: skip
    found = ft.lr_find(small_dataset, mode="linear", steps=30, out=tmp_path / "lr.png", quiet=True, **TINY)
    assert found.plot == tmp_path / "lr.png" and found.plot.stat().st_size > 0
    rows = read_csv(tmp_path / "lr.csv")
    assert len(rows) == len(found.lrs) and float(rows[0]["lr"]) == pytest.approx(1e-7)
    ratios = [b / a for a, b in zip(found.lrs, found.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios)), "exponential sweep"
    assert found.lrs[0] <= found.suggestion <= found.lrs[-1]
    with pytest.raises(ft.UserError, match=r"out= .* already exists"):
        ft.lr_find(small_dataset, mode="linear", steps=30, out=tmp_path / "lr.png", quiet=True, **TINY)

    # a sweep to absurd rates diverges and stops early; the network's weights are put back
    cfg = RunConfig.from_flat(data=str(small_dataset), mode="linear", optimizer="sgd", **TINY)
    data = prepare_data(cfg.data, seed=0, progress=False)
    model = build_model("mobilenet_v2", 3, state_dict=resolve_weights(get_backbone("mobilenet_v2"))[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pre = get_backbone("mobilenet_v2").preprocessing.with_crop_size(32)
    diverging = range_test(model, cfg, data, pre, choose_runtime("cpu", "fp32"), start_lr=1e-3, end_lr=1e6, steps=40,
                           quiet=True, log=print)  # fmt: skip
    assert diverging.diverged and len(diverging.lrs) < 40
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    run = ft.train(small_dataset, mode="linear", lr="auto", epochs=1, project=tmp_path / "runs", report=False, **TINY)
    said = capsys.readouterr().out
    chosen = json.loads((run / "config.json").read_text())["settings"]["train"]["lr"]
    assert f"suggested --lr {chosen:.2e}" in said
    assert (tmp_path / "runs" / "lr-find-mobilenet_v2-linear.png").is_file()
