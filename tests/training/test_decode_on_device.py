"""--decode device end to end on the CPU: a run trains and validates on JPEGs decoded in the training process, with a
PNG and an EXIF-turned photo among them, resumes exactly, and the combinations it cannot honour are refused."""

import json

import pytest
from helpers import SAMPLE, assert_trained_alike, read_csv, save_with_orientation
from PIL import Image

import foldertune as ft
from foldertune.config import RunConfig
from foldertune.data.device_decode import PackedImages
from foldertune.device import choose_runtime
from foldertune.errors import UserError
from foldertune.models.registry import get_backbone
from foldertune.training.loaders import build_loaders
from foldertune.training.prepare import prepare_data

SETTINGS = {"img_size": 64, "batch_size": 8, "precision": "fp32", "quiet": True, "report": False,
            "decode": "device", "scheduler": "constant"}  # fmt: skip  # constant: resumed, the 2-epoch run's rates


def test_decode_on_the_device_trains_validates_and_resumes_exactly(tmp_path, mobilenet_weights, recwarn):
    photos = tmp_path / "photos"
    for label in ("fishes", "tools"):
        (photos / label).mkdir(parents=True)
        for number, source in enumerate(sorted((SAMPLE / label).glob("*.webp"))[:7]):
            picture = Image.open(source).convert("RGB")
            if number == 0:
                picture.save(photos / label / f"{number}.png")  # decoded on the CPU in the worker
            elif number == 1:
                save_with_orientation(picture, photos / label / f"{number}.jpg", 6)  # stored turned, as a camera does
            else:
                picture.save(photos / label / f"{number}.jpg", quality=90)

    cfg = RunConfig.from_flat(data=str(photos), decode="device", img_size=64, batch_size=16, workers=0)
    prepared = prepare_data(cfg.data, seed=0, progress=False)
    loaders = build_loaders(prepared, get_backbone("mobilenet_v2").preprocessing, cfg, choose_runtime("cpu"))
    packed, _ = next(iter(loaders["train"]))  # the JPEGs' bytes for the training process; the PNGs decoded already
    pngs = sorted(path.endswith(".png") for path, _ in prepared.samples("train"))
    assert isinstance(packed, PackedImages) and sorted((packed.lengths == 0).tolist()) == pngs
    assert len(packed.decoded) == sum(pngs) and packed.data.numel() == int(packed.lengths.sum())

    whole = ft.train(photos, epochs=2, workers=1, project=tmp_path, name="whole", **SETTINGS)  # a loader process
    epochs = read_csv(whole / "epochs.csv")
    assert len(epochs) == 2 and all(0 <= float(row["val_acc"]) <= 1 for row in epochs)
    assert all(float(row["train_loss"]) < 5 for row in epochs)
    config = json.loads((whole / "config.json").read_text())
    assert config["settings"]["data"]["decode"] == "device"
    assert not [w for w in recwarn if ".png" in str(w.message) or "decod" in str(w.message).lower()]  # nothing said

    part = ft.train(photos, epochs=1, workers=0, project=tmp_path, name="part", **SETTINGS)  # no loader process
    ft.train(resume=part, epochs=2, quiet=True)
    assert json.loads((part / "config.json").read_text())["settings"]["data"]["decode"] == "device"
    assert_trained_alike(part, whole)  # the same batches, crops and weights, whatever the number of workers


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cache": "ram"}, "--cache ram keeps pictures decoded on the CPU, and --decode device decodes the files on "
                           "the training device instead; use one or the other."),
        ({"augment": "trivialwide"}, "--augment trivialwide runs on the decoded crops in the loader workers, which "
                                     "--decode device leaves undecoded; use --decode cpu or --augment standard."),
        ({"mode": "linear"}, "--decode device applies to the image loaders, which --mode linear does not use with its "
                             "feature cache; drop --decode device or add --feature-cache off."),
    ],
)  # fmt: skip
def test_combinations_decode_device_cannot_honour_are_refused_in_one_sentence(settings, message):
    with pytest.raises(UserError) as refused:
        RunConfig.from_flat(data="photos", decode="device", **settings)
    assert str(refused.value) == message
    RunConfig.from_flat(data="photos", decode="device", **({"mode": "linear", "feature_cache": "off"}))  # this works
