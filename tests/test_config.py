import dataclasses
import json
import re

import pytest

from foldertune.config import (
    CHOICES,
    DEFAULT_LABEL_SMOOTHING,
    DEFAULT_LR,
    DEFAULT_WEIGHT_DECAY,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    field_docs,
)
from foldertune.errors import UserError


def test_flat_settings_fill_the_sections_and_resolve_per_mode_defaults():
    cfg = RunConfig.from_flat(data="photos", model="resnet18", mode="linear", epochs=3, val=0.3, run_name="r")
    assert (cfg.data.root, cfg.data.val_fraction, cfg.model.backbone, cfg.train.epochs) == (
        "photos",
        0.3,
        "resnet18",
        3,
    )
    assert cfg.train.lr == DEFAULT_LR["linear"] and cfg.train.weight_decay == 0.05
    assert RunConfig.from_flat(data="x", optimizer="adam").train.weight_decay == 0.0  # the tutorial's Adam
    assert RunConfig.from_flat(data="x", mode="scratch").model.pretrained is False
    # the command line's own names work too: --name, --no-pretrained, --manifest without DATA
    named = RunConfig.from_flat(data="x", name="try1", no_pretrained=True)
    assert named.run_name == "try1" and named.model.pretrained is False and named.model.backbone == "mobilenet_v2"
    assert RunConfig.from_flat(manifest="m.csv").data.root is None


def test_a_config_saved_before_the_cache_settings_existed_still_loads():
    raw = RunConfig.from_flat(data="photos").to_dict()
    for section, key in (("data", "cache"), ("data", "cache_dir"), ("train", "feature_cache"),
                         ("train", "feature_views"), ("train", "compile")):  # fmt: skip
        del raw[section][key]
    cfg = RunConfig.from_dict(raw)
    assert (cfg.data.cache, cfg.train.feature_cache, cfg.train.feature_views, cfg.train.compile) == (
        "off", "disk", 1, False)  # fmt: skip


def test_a_config_saved_before_class_balance_existed_trains_as_it_did():
    raw = RunConfig.from_flat(data="photos").to_dict()
    assert raw["train"]["balance"] == "weights"  # a new run's default
    del raw["train"]["balance"]
    assert RunConfig.from_dict(raw).train.balance == "none"  # what runs before the setting did


def test_label_smoothing_defaults_by_mode_and_an_older_run_keeps_its_own():
    modes = ("finetune", "linear", "scratch")
    resolved = [RunConfig.from_flat(data="x", mode=mode).train.label_smoothing for mode in modes]
    assert resolved == [DEFAULT_LABEL_SMOOTHING[mode] for mode in modes] == [0.1, 0.0, 0.0]
    assert RunConfig.from_flat(data="x", label_smoothing=0.0).train.label_smoothing == 0.0  # asked for: kept
    raw = RunConfig.from_flat(data="photos", label_smoothing=0.0).to_dict()  # what runs saved before this default hold
    assert RunConfig.from_dict(raw).train.label_smoothing == 0.0


def test_round_trip_through_json():
    cfg = RunConfig.from_flat(data="photos", img_size=128, patience=2, lr=0.01)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_configs_are_frozen():
    cfg = RunConfig.from_flat(data="photos")
    with pytest.raises(AttributeError):
        cfg.train.epochs = 5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epoch": 3}, "unknown setting 'epoch'; did you mean 'epochs'?"),
        ({"epochs": 0}, "--epochs must be a whole number of at least 1; got 0."),
        ({"batch_size": 2.5}, "--batch-size must be a whole number"),
        ({"lr": -1.0}, "--lr must be a positive number; got -1.0."),
        ({"val": 1.5}, "--val must be a fraction between 0 and 1; got 1.5."),
        ({"val": 0.6, "test": 0.5}, "--val plus --test must leave some images"),
        ({"mode": "freeze"}, "--mode must be one of linear, finetune, scratch; got 'freeze'."),
        ({"model": "resnet19"}, "unknown backbone 'resnet19' for --model; did you mean 'resnet18'?"),
        ({"img_size": 8}, "--img-size must be between 16 and 4096"),
        ({"patience": 0}, "--patience must be at least 1"),
        ({"mode": "scratch", "weights": "w.pth"}, "--weights cannot be combined with --mode scratch"),
        ({"mode": "linear", "pretrained": False}, "--mode linear trains only the head"),
        ({"seed": -1}, "--seed must be a whole number of 0 or more; got -1."),
        ({"manifest": "m.csv"}, "pass either DATA (an image folder) or --manifest CSV, not both."),
        ({"feature_views": 0}, "--feature-views must be a whole number of at least 1; got 0."),
        ({"feature_cache": "ssd"}, "--feature-cache must be one of disk, memory, off; got 'ssd'."),
        ({"cache": "gpu"}, "--cache must be one of off, ram, disk; got 'gpu'."),
    ],
)
def test_bad_values_get_one_sentence_naming_the_flag(settings, message):
    with pytest.raises(UserError) as caught:
        RunConfig.from_flat(data="photos", **settings)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_key_in_a_saved_config_is_rejected():
    raw = RunConfig.from_flat(data="photos").to_dict()
    raw["train"]["epohcs"] = 3
    with pytest.raises(UserError, match="did you mean 'epochs'"):
        RunConfig.from_dict(raw)


def test_every_setting_has_a_docstring_and_every_choice_list_a_setting():
    names = set()
    for klass in (DataConfig, ModelConfig, TrainConfig, RunConfig):
        docs = field_docs(klass)
        for f in dataclasses.fields(klass):
            names.add(f.name)
            assert f.name in ("data", "model", "train") or docs[f.name].endswith("."), (klass.__name__, f.name)
    assert set(CHOICES) <= names
    assert "\n" not in field_docs(TrainConfig)["feature_cache"]  # a docstring over two lines is one line of help


def test_the_defaults_the_docstrings_state_are_the_ones_used():
    docs = field_docs(TrainConfig)
    for name, used in (("lr", DEFAULT_LR), ("weight_decay", DEFAULT_WEIGHT_DECAY)):
        stated = re.findall(r"(\w+) (\d+(?:\.\d+)?(?:e-?\d+)?)\b", docs[name].split("None: ")[1])
        assert {key: float(value) for key, value in stated} == used, name
