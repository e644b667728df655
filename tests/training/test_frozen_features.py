"""The linear-mode feature cache: hits, misses, invalidation, and features equal to the network's own."""

import json
import shutil

import pytest
import torch
from helpers import copy_subset, read_csv
from PIL import Image

import foldertune as ft
from foldertune.config import RunConfig
from foldertune.data.dataset import EpochBatchSampler
from foldertune.data.readers import EvalReader
from foldertune.data.transforms import model_input
from foldertune.device import choose_runtime
from foldertune.models.build import build_model, capture_head_input
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.preprocessing import Preprocessing
from foldertune.runs.cache import ArrayStore, file_digest
from foldertune.training.fit import fit, other_accuracy_note
from foldertune.training.frozen_features import FeatureBatches, extract_features, feature_store

PRE = Preprocessing(crop_size=64, resize_size=73)
RUNTIME = choose_runtime("cpu", "fp32")


@pytest.fixture(scope="module")
def model(mobilenet_weights):
    state_dict, _ = resolve_weights(get_backbone("mobilenet_v2"), log=lambda *_: None)
    return build_model("mobilenet_v2", 3, state_dict=state_dict).eval()


@pytest.fixture
def photos(tmp_path):
    folder = copy_subset(tmp_path / "photos", 2, {"fishes": "fishes", "tools": "tools", "monuments": "monuments"})
    return sorted(str(p) for p in folder.rglob("*.*"))


def features_of(model, paths, root, pre=PRE, **options):
    store = feature_store(model, "mobilenet_v2", pre, precision="fp32", root=root)
    return extract_features(model, "mobilenet_v2", paths, pre, RUNTIME, store=store, progress=False, **options)


def test_features_are_what_the_network_gives_its_head(model, photos, tmp_path):
    features, computed = features_of(model, photos, tmp_path / "cache")
    assert features.shape == (6, 1, 1280) and computed == 6
    images = torch.stack([EvalReader(PRE)(path) for path in photos])
    with torch.inference_mode(), capture_head_input(model, "mobilenet_v2") as captured:
        logits = model(model_input(images, PRE, device=RUNTIME.device, channels_last=False))
    assert torch.allclose(features[:, 0], captured[0], atol=1e-4)
    assert torch.allclose(model.classifier(features[:, 0]), logits, atol=1e-4)  # the head on them: same logits


def test_second_pass_reads_everything_from_the_cache(model, photos, tmp_path):
    first, computed = features_of(model, photos, tmp_path / "cache")
    again, recomputed = features_of(model, photos, tmp_path / "cache")
    assert (computed, recomputed) == (6, 0) and torch.equal(first, again)
    moved = tmp_path / "moved.webp"
    shutil.copy(photos[0], moved)  # same bytes elsewhere: a hit
    _, computed = features_of(model, [str(moved)], tmp_path / "cache")
    assert computed == 0


def test_a_changed_file_is_a_miss_and_only_it_is_recomputed(model, photos, tmp_path):
    first, _ = features_of(model, photos, tmp_path / "cache")
    Image.open(photos[2]).transpose(Image.Transpose.ROTATE_90).save(photos[2])  # the user edited one photo
    second, computed = features_of(model, photos, tmp_path / "cache")
    assert computed == 1
    assert torch.equal(second[[0, 1, 3, 4, 5]], first[[0, 1, 3, 4, 5]]) and not torch.allclose(second[2], first[2])


def test_other_weights_or_preprocessing_are_misses(model, photos, tmp_path):
    root = tmp_path / "cache"
    features_of(model, photos, root)
    _, computed = features_of(model, photos, root, pre=Preprocessing(crop_size=72, resize_size=82))
    assert computed == 6  # another --img-size
    other = build_model("mobilenet_v2", 3)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.features[0][0].weight.mul_(1.01)  # fine-tuned backbone weights
    _, computed = features_of(other.eval(), photos, root)
    assert computed == 6
    with torch.no_grad():
        other.features[0][0].weight.copy_(model.features[0][0].weight)
        other.classifier[1].weight.mul_(3)  # only the head differs: the frozen part is the same, so hits
    _, computed = features_of(other.eval(), photos, root)
    assert computed == 0
    assert len(list((root / "features").iterdir())) == 3  # one folder per (weights, preprocessing)


def test_a_damaged_entry_is_recomputed(model, photos, tmp_path):
    root = tmp_path / "cache"
    first, _ = features_of(model, photos, root)
    entry = next((root / "features").rglob(f"{file_digest(photos[0])}.npy"))
    entry.write_bytes(entry.read_bytes()[:100])  # cut short, as a crash or a full disk would leave it
    second, computed = features_of(model, photos, root)
    assert computed == 1 and torch.allclose(first, second, atol=1e-5)


def test_augmented_views_are_stored_and_the_same_in_every_run(model, photos, tmp_path):
    views, computed = features_of(model, photos, tmp_path / "a", views=3)
    assert views.shape == (6, 3, 1280) and computed == 18
    plain, _ = features_of(model, photos, tmp_path / "b")
    assert torch.allclose(views[:, 0], plain[:, 0], atol=1e-5)  # view 0 is the evaluation view
    assert not torch.allclose(views[:, 1], views[:, 0], atol=1e-2) and not torch.allclose(views[:, 1], views[:, 2])
    again, _ = features_of(model, photos, tmp_path / "c", views=3)  # no cache shared: computed afresh
    assert torch.allclose(again, views, atol=1e-5)  # the crops are seeded by the file's content
    batches = FeatureBatches(views, [0, 0, 1, 1, 2, 2], EpochBatchSampler(6, 6, shuffle=True, seed=0), seed=0)
    chosen = {}
    for epoch in (1, 2):
        batches.batch_sampler.set_epoch(epoch)
        [(inputs, labels)] = list(batches)
        chosen[epoch] = inputs
        assert inputs.shape == (6, 1280) and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert not torch.equal(chosen[1], chosen[2])


def test_array_store_ignores_damaged_and_wrong_shaped_entries(tmp_path):
    store = ArrayStore(tmp_path)
    store.save("ab12", torch.arange(4.0).numpy())
    assert store.load("ab12").tolist() == [0, 1, 2, 3]
    assert store.load("ab12", shape=(5,)) is None and store.load("missing") is None
    store.path("ab12").write_bytes(b"garbage")
    assert store.load("ab12") is None
    assert not list(tmp_path.rglob("*.tmp"))


LINEAR = {"mode": "linear", "img_size": 64, "batch_size": 8, "workers": 0, "precision": "fp32", "quiet": True,
          "report": False}  # fmt: skip


def test_cached_linear_training_validates_like_the_full_network(small_dataset, tmp_path, mobilenet_weights, capsys):
    run = ft.train(small_dataset, epochs=4, project=tmp_path / "runs", cache_dir=tmp_path / "cache", **LINEAR)
    epochs = read_csv(run / "epochs.csv")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    best = epochs[metrics["best_epoch"] - 1]
    # per-epoch validation ran the head on cached features; the final evaluation runs the whole network on images
    assert float(best["val_acc"]) == pytest.approx(metrics["val"]["accuracy"])
    evaluation = json.loads((run / "eval" / "val" / "metrics.json").read_text(encoding="utf-8"))
    assert float(best["val_loss"]) == pytest.approx(evaluation["calibration"]["nll_before"], abs=1e-4)  # T = 1
    assert len(list((tmp_path / "cache" / "features").rglob("*.npy"))) == 24
    # a second run on the same images: the frozen backbone runs on none of them, every feature comes from the cache
    capsys.readouterr()  # drop the first run's output
    ft.train(small_dataset, epochs=2, project=tmp_path / "runs", cache_dir=tmp_path / "cache", **LINEAR)
    second = capsys.readouterr().out
    assert "features: 24 image view(s), 0 computed by the frozen backbone, 24 from the cache (" in second


def test_an_other_accuracy_at_the_end_is_explained_in_one_line():
    overall = {"accuracy": 24 / 28, "images": 28}
    assert other_accuracy_note(6, 24 / 28, overall, "bf16") is None  # the same: nothing to explain
    line = other_accuracy_note(6, 25 / 28, overall, "bf16")
    assert line.strip() == ("(epoch 6 scored 0.893 during training, on features computed in bf16; best.pt in fp32 "
                            "gets 1 image fewer of 28 right: a near tie)")  # fmt: skip
    line = other_accuracy_note(3, 0.75, {"accuracy": 0.8, "images": 100}, None)
    assert "training;" in line and "5 images more of 100 right: near ties" in line


def test_cached_linear_training_resumes_exactly(small_dataset, tmp_path, mobilenet_weights):
    whole = ft.train(small_dataset, epochs=4, project=tmp_path / "a", **LINEAR)

    def stop_after_epoch_2(line: str) -> None:  # called once epoch 2 is saved, as a Ctrl-C would land there
        if line.startswith("epoch 2/4"):
            raise KeyboardInterrupt

    settings = {key: value for key, value in LINEAR.items() if key != "quiet"}
    cfg = RunConfig.from_flat(data=str(small_dataset), epochs=4, project=str(tmp_path / "b"), **settings)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, quiet=True, log=stop_after_epoch_2)
    part = tmp_path / "b" / "mobilenet_v2-linear"
    assert not (part / "metrics.json").exists()
    ft.resume(part, quiet=True)

    def strip(rows):
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]

    assert strip(read_csv(part / "epochs.csv")) == strip(read_csv(whole / "epochs.csv"))
    assert read_csv(part / "batches.csv") == read_csv(whole / "batches.csv")


def test_feature_cache_off_runs_the_backbone_every_batch(small_dataset, tmp_path, mobilenet_weights):
    run = ft.train(small_dataset, epochs=1, project=tmp_path / "runs", feature_cache="off", cache_dir=tmp_path / "c",
                   **LINEAR)  # fmt: skip
    assert not (tmp_path / "c" / "features").exists()  # (the scan's cache is there: what each file held)
    assert json.loads((run / "config.json").read_text(encoding="utf-8"))["settings"]["train"]["feature_cache"] == "off"


def test_compiled_head_trains_and_saves_plain_weights(small_dataset, tmp_path, mobilenet_weights):
    lines = []
    settings = {key: value for key, value in LINEAR.items() if key != "quiet"}
    cfg = RunConfig.from_flat(data=str(small_dataset), epochs=2, project=str(tmp_path), compile=True, **settings)
    run = fit(cfg, quiet=True, log=lines.append)
    assert any(line.startswith("torch.compile: the first step took") for line in lines)
    weights = torch.load(run / "best.pt", weights_only=True)["model"]
    assert "classifier.1.weight" in weights and not any("_orig_mod" in key for key in weights)
    assert json.loads((run / "metrics.json").read_text(encoding="utf-8"))["val"]["accuracy"] > 0
