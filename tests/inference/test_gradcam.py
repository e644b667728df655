"""Grad-CAM maps come from the real network and point at the object."""

import numpy as np
from helpers import SAMPLE, run_cli
from PIL import Image
from torchvision.models import MobileNet_V2_Weights

from foldertune.inference.classifier import Classifier
from foldertune.inference.gradcam import Explainer
from foldertune.models.build import build_model
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights
from foldertune.runs.checkpoint import make_checkpoint, save_checkpoint


def imagenet_checkpoint(path):
    """The pretrained ImageNet network itself, saved as a foldertune checkpoint with the 1000 ImageNet classes."""
    backbone = get_backbone("mobilenet_v2")
    state, _ = resolve_weights(backbone, log=lambda *_: None)
    model = build_model("mobilenet_v2", None, state_dict=state)
    classes = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    checkpoint = make_checkpoint(model, backbone="mobilenet_v2", classes=classes, preprocessing=backbone.preprocessing,
                                 config={}, epoch=0, metrics={})  # fmt: skip
    save_checkpoint(path, checkpoint)
    return path


def test_the_map_for_anemone_fish_lies_on_the_fish(tmp_path, mobilenet_weights):
    classifier = Classifier.from_path(imagenet_checkpoint(tmp_path / "imagenet.pt"), device="cpu")
    fish = Image.open(SAMPLE / "fishes" / "fish9.webp").convert("RGB").resize((200, 200))  # a clownfish
    canvas = Image.new("RGB", (448, 448), (255, 255, 255))
    canvas.paste(fish, (14, 14))  # top-left quadrant; the rest is white
    explanation = Explainer(classifier).explain([canvas], ["anemone fish"])[0]
    heat = explanation.heatmap
    assert heat.shape == (224, 224) and explanation.label == "anemone fish"
    half = heat.shape[0] // 2
    top_left = heat[:half, :half].sum()
    assert top_left > 0.6 * heat.sum(), top_left / heat.sum()  # most of the attention is on the fish
    assert explanation.overlay.shape == (224, 224, 3) and explanation.overlay.dtype == np.uint8


def test_explain_cli_writes_one_map_per_image_and_skips_unreadable(chinese_run, tmp_path):
    run, data = chinese_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"no picture")
    photos = sorted((data / "鱼").glob("*.webp"))[:2]
    twin = tmp_path / "other" / photos[0].name  # the same file name in another folder
    twin.parent.mkdir()
    twin.write_bytes(photos[1].read_bytes())
    done = run_cli("explain", str(run), *map(str, photos), str(twin), str(broken), "--out", str(tmp_path / "cams"))
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "cams").iterdir())
    assert written == sorted([f"{p.stem}_cam.png" for p in photos] + [f"other_{twin.stem}_cam.png"])
    assert "skipped" in done.stdout and "broken.png" in done.stdout
    with Image.open(tmp_path / "cams" / written[0]) as image:
        assert image.size[0] > 400
