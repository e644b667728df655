"""The recipe flags on real photos: --ema, --head-warmup, --layer-decay and --augment in one run, then resumed."""

import json

import pytest
import torch
from helpers import assert_trained_alike, copy_subset

import foldertune as ft
from foldertune.config import RunConfig
from foldertune.errors import UserError
from foldertune.training import fit

RECIPE = {"img_size": 64, "batch_size": 8, "workers": 0, "precision": "fp32", "quiet": True, "report": False,
          "head_warmup": 1, "ema": 0.9, "layer_decay": 0.5, "augment": "trivialwide",
          "scheduler": "constant"}  # constant: --resume --epochs 3 then follows the 3-epoch run's rates  # fmt: skip
FIRST_CONV, HEAD = "features.0.0.weight", "classifier.1.weight"


def test_recipe_flags_train_as_documented_and_resume_exactly(tmp_path, mobilenet_weights, monkeypatch):
    photos = copy_subset(tmp_path / "photos", 6, {"fishes": "fishes", "tools": "tools"})  # 10 train, 2 val
    seen = []  # after each epoch of the "whole" run: the trained and averaged weights, and the parameter groups' rates
    real = fit.train_one_epoch

    def observed(model, loader, opt, ctx, **kwargs):
        trained = real(model, loader, opt, ctx, **kwargs)
        rates = {id(p): group["lr"] for group in opt.optimizer.param_groups for p in group["params"]}
        seen.append({"model": {k: v.clone() for k, v in model.state_dict().items()},
                     "ema": {k: v.clone() for k, v in opt.ema.module.state_dict().items()},
                     "rates": {name: rates[id(p)] for name, p in model.named_parameters()}})  # fmt: skip
        return trained

    monkeypatch.setattr(fit, "train_one_epoch", observed)
    whole = ft.train(photos, epochs=3, project=tmp_path, name="whole", **RECIPE)
    monkeypatch.undo()
    pretrained = torch.load(mobilenet_weights, weights_only=True)

    # --head-warmup 1: epoch 1 trains the head alone (backbone weights and BatchNorm statistics as pretrained)
    assert torch.equal(seen[0]["model"][FIRST_CONV], pretrained[FIRST_CONV])
    assert torch.equal(seen[0]["model"]["features.1.conv.0.1.running_mean"],
                       pretrained["features.1.conv.0.1.running_mean"])  # fmt: skip
    assert not torch.equal(seen[0]["model"][HEAD], seen[1]["model"][HEAD])
    assert not torch.equal(seen[1]["model"][FIRST_CONV], pretrained[FIRST_CONV])  # then every layer trains

    # --layer-decay 0.5: the head at --lr, each of mobilenet_v2's 19 feature blocks half the rate of the next
    rates = seen[-1]["rates"]
    assert rates[HEAD] == pytest.approx(5e-4)
    assert rates["features.18.0.weight"] == pytest.approx(5e-4 * 0.5)
    assert rates["features.17.conv.0.0.weight"] == rates["features.17.conv.3.bias"] == pytest.approx(5e-4 * 0.25)
    assert rates[FIRST_CONV] == pytest.approx(5e-4 * 0.5**19)

    # --ema: best.pt holds the average at its epoch, which differs from the trained weights; last.pt the trained ones
    best = torch.load(whole / "best.pt", weights_only=True)
    last = torch.load(whole / "last.pt", weights_only=True)
    epoch = json.loads((whole / "metrics.json").read_text())["best_epoch"]
    assert all(torch.equal(best["model"][k], seen[epoch - 1]["ema"][k]) for k in best["model"])
    assert not torch.equal(best["model"][HEAD], seen[epoch - 1]["model"][HEAD])
    assert all(torch.equal(last["model"][k], seen[-1]["model"][k]) for k in last["model"])
    assert int(last["training"]["ema"]["n_averaged"]) == 3 * 2  # 3 epochs of 10 photos in batches of 8: 2 steps
    settings = json.loads((whole / "config.json").read_text())["settings"]["train"]
    assert (settings["augment"], settings["ema"], settings["head_warmup"]) == ("trivialwide", 0.9, 1)

    # --resume continues the same average, warm-up and rates: 2 epochs, then a third, train what 3 epochs did
    part = ft.train(photos, epochs=2, project=tmp_path, name="part", **RECIPE)
    ft.train(resume=part, epochs=3, quiet=True)
    assert_trained_alike(part, whole)
    resumed = torch.load(part / "last.pt", weights_only=True)["training"]["ema"]
    assert all(torch.equal(resumed[k], last["training"]["ema"][k]) for k in resumed)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "linear", "head_warmup": 1}, "--head-warmup trains the head on the frozen pretrained backbone"),
        ({"epochs": 2, "head_warmup": 2}, "--head-warmup 2 leaves no epoch to fine-tune"),
        ({"ema": 1.5}, "--ema must be a decay between 0 and 1"),
        ({"layer_decay": 0}, "--layer-decay must be a factor above 0"),
        ({"mode": "linear", "augment": "randaugment"}, "add --feature-cache off"),
    ],
)
def test_recipe_settings_that_cannot_work_are_one_sentence(settings, message):
    with pytest.raises(UserError, match=message):
        RunConfig.from_flat(data="photos", **settings)
