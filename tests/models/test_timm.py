"""timm backbones (`--model timm/NAME`): trained, exported, predicted with and explained, with weights from a file or
the Hugging Face cache; foundation-model towers (DINOv2, CLIP) in linear mode; torchvision's mobilenet_v2 weights
converted into timm's mobilenetv2_100.

Nothing here downloads: the models are built with random weights (timm's tiny `test_*` models, and the real DINOv2
and CLIP architectures at a small image size), saved to files in the test, and loaded from there.
"""

import json

import pytest
import torch
from helpers import SAMPLE, read_csv
from safetensors.torch import save_file

import foldertune as ft
from foldertune.cli import main
from foldertune.deploy.onnx_classifier import OnnxClassifier
from foldertune.errors import UserError
from foldertune.models.build import build_model, capture_head_input
from foldertune.models.convert import convert_by_position
from foldertune.models.registry import get_backbone
from foldertune.models.weight_files import fetch_weights_file
from foldertune.models.weights import resolve_weights

timm = pytest.importorskip("timm")
TINY = {"batch_size": 8, "workers": 0, "precision": "fp32", "quiet": True, "report": False}


def random_weights(path, model_name: str, **kwargs) -> str:
    """A timm model's random weights saved as .safetensors, as a user's fine-tuned or downloaded file would be."""
    save_file(timm.create_model(model_name, pretrained=False, **kwargs).state_dict(), str(path))
    return str(path)


def test_a_timm_vit_trains_exports_predicts_and_explains(small_dataset, tmp_path):
    # weights saved for timm's own 160 px: loading them at 32 px resamples the position embeddings (timm's filter)
    weights = random_weights(tmp_path / "vit.safetensors", "test_vit")
    run = ft.train(small_dataset, model="timm/test_vit", weights=weights, mode="linear", epochs=2, img_size=32,
                   project=tmp_path / "runs", **TINY)  # fmt: skip
    assert run.name == "timm-test_vit-linear"
    best = torch.load(run / "best.pt", weights_only=True)
    cfg = timm.models.get_pretrained_cfg("test_vit")
    assert best["backbone"] == "timm/test_vit" and best["versions"]["timm"] == timm.__version__
    assert best["preprocessing"] == {"crop_size": 32, "resize_size": round(32 / cfg.crop_pct), "interpolation":
                                     "bicubic", "mean": list(cfg.mean), "std": list(cfg.std)}  # fmt: skip
    assert best["model"]["head.weight"].shape[0] == 3
    frozen = {k: v for k, v in best["model"].items() if not k.startswith("head.")}
    loaded = build_model("timm/test_vit", 3, state_dict=resolve_weights(get_backbone("timm/test_vit"),
                         weights_file=weights)[0], img_size=32).state_dict()  # fmt: skip
    assert all(torch.equal(frozen[k], loaded[k]) for k in frozen), "linear mode kept the file's backbone weights"
    assert len(read_csv(run / "epochs.csv")) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["weights"].startswith("--weights ")

    exported = ft.export(run)
    assert exported.parity["top1_agreement"] == 1.0 and exported.parity["max_probability_difference"] < 1e-4
    photo = next((small_dataset / "fishes").iterdir())
    torch_answer = ft.load(run).predict(str(photo))
    onnx_answer = OnnxClassifier(exported.path).predict(str(photo))
    assert torch_answer.label == onnx_answer.label and torch_answer.probability == pytest.approx(
        onnx_answer.probability, abs=1e-4
    )
    cams = ft.explain(run, [str(photo)], out=tmp_path / "cams")  # Grad-CAM on the patch tokens laid on their grid
    assert len(cams) == 1 and cams[0].stat().st_size > 0

    # a convolutional timm model from random weights, every layer trained, channels_last and bf16 autocast
    scratch = ft.train(small_dataset, model="timm/test_efficientnet", mode="finetune", pretrained=False, epochs=1,
                       img_size=32, project=tmp_path / "runs", **{**TINY, "precision": "bf16"})  # fmt: skip
    resolved = json.loads((scratch / "config.json").read_text())["resolved"]
    assert resolved["weights"].startswith("none") and resolved["precision"] == "bf16" and resolved["channels_last"]
    assert ft.explain(scratch, [str(photo)], out=tmp_path / "cams2")


def test_foundation_towers_feed_their_class_token_to_the_head_at_a_chosen_size(tmp_path):
    # DINOv2 ViT-S/14 (random weights: the real ones cannot be fetched here): timm declares 518 px, patch 14
    dino = get_backbone("timm/vit_small_patch14_dinov2")
    assert dino.preprocessing.crop_size == 518 and dino.preprocessing.resize_size == 518  # crop fraction 1.0
    assert dino.classes == 0, "DINOv2's weights have no classifier: the head is always new"
    weights = random_weights(tmp_path / "dino.safetensors", "vit_small_patch14_dinov2", img_size=56)
    state, _ = resolve_weights(dino, weights_file=weights)
    model = build_model("timm/vit_small_patch14_dinov2", 4, state_dict=state, img_size=28).eval()
    assert tuple(model.pos_embed.shape) == (1, 1 + 2 * 2, 384), "position embeddings resampled to a 2x2 grid"
    images = torch.rand(2, 3, 28, 28)
    with torch.inference_mode(), capture_head_input(model, "timm/vit_small_patch14_dinov2") as captured:
        model(images)
        tokens = model.forward_features(images)  # (N, 1 class token + 4 patches, 384), after the final norm
    assert torch.allclose(captured[0], tokens[:, 0]), "the head sees the class token"
    with pytest.raises(UserError, match=r"--img-size 30 is not a multiple of .* patch size 14: use 28 or 42"):
        build_model("timm/vit_small_patch14_dinov2", 4, img_size=30)

    # CLIP ViT-B/16 image tower: CLIP's own normalisation, 224 px at crop fraction 0.95, patch 16
    clip = get_backbone("timm/vit_base_patch16_clip_224")
    assert clip.preprocessing.mean == pytest.approx((0.4815, 0.4578, 0.4082), abs=1e-4)
    assert (clip.preprocessing.crop_size, clip.preprocessing.resize_size) == (224, 235)
    with pytest.raises(UserError, match="patch size 16: use 16 or 32"):
        build_model("timm/vit_base_patch16_clip_224", 4, img_size=28)


def test_weights_come_from_the_hugging_face_cache_or_one_sentence_says_where(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    backbone = get_backbone("timm/test_resnet")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as refused:
        fetch_weights_file(backbone)
    assert (
        f"put {backbone.hf_hub_id}'s model.safetensors in the Hugging Face cache {tmp_path / 'hub'}"
        in str(refused.value)
        and "HF_HUB_OFFLINE is set" in str(refused.value)
        and "--no-pretrained" in str(refused.value)
    )

    # the cache's own layout, as `hf download` leaves it
    repo = tmp_path / "hub" / ("models--" + backbone.hf_hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    random_weights(repo / "snapshots" / "0123abc" / "model.safetensors", "test_resnet")
    state, origin = resolve_weights(backbone)
    assert origin.startswith("Hugging Face cache") and "fc.weight" in state
    model = build_model("timm/test_resnet", 2, state_dict=state)
    stem = next(iter(state))
    assert torch.equal(model.state_dict()[stem], state[stem])

    assert main(["models", "--timm", "test_res*"]) in (None, 0)
    listed = capsys.readouterr().out
    assert "timm/test_resnet.r160_in1k" in listed and "yes" in listed  # cached


def test_a_new_timm_head_starts_small_as_torchvision_heads_do():
    # timm draws EfficientNet-style heads from +-1/sqrt(classes): 0.7 for 2 classes, which starts a linear probe on
    # unnormalised features at a loss of 4-5; foldertune's heads use torch's +-1/sqrt(features) for every backbone
    head = build_model("timm/test_efficientnet", 2).get_submodule("classifier")
    assert head.weight.abs().max() <= 1 / head.in_features**0.5


def test_unknown_timm_names_and_missing_pieces_are_one_sentence():
    with pytest.raises(UserError, match=r"timm has no model .convnext_atoo.*convnext_atto"):
        get_backbone("timm/convnext_atoo")
    with pytest.raises(UserError, match="distilled"):
        get_backbone("timm/deit_tiny_distilled_patch16_224")


def test_torchvision_mobilenet_v2_weights_converted_for_timm_predict_the_same(mobilenet_weights):
    from foldertune.data.readers import EvalReader
    from foldertune.data.transforms import normalize_batch

    torchvision_state, _ = resolve_weights(get_backbone("mobilenet_v2"))
    converted = convert_by_position(torchvision_state, get_backbone("timm/mobilenetv2_100").build())
    pre = get_backbone("mobilenet_v2").preprocessing
    photos = [sorted(folder.iterdir())[0] for folder in sorted(SAMPLE.iterdir()) if folder.is_dir()]
    inputs = normalize_batch(torch.stack([EvalReader(pre)(str(p)) for p in photos]), pre)
    with torch.inference_mode():
        ours = build_model("mobilenet_v2", None, state_dict=torchvision_state).eval()(inputs).softmax(1)
        theirs = build_model("timm/mobilenetv2_100", None, state_dict=converted).eval()(inputs).softmax(1)
    assert theirs.shape == (len(photos), 1000)
    assert torch.equal(ours.argmax(1), theirs.argmax(1)) and torch.allclose(ours, theirs, atol=1e-5)
    assert ours.max(1).values.mean() > 0.3, "real ImageNet weights: confident answers, not a random network's"
    with pytest.raises(UserError, match="not laid out alike"):
        convert_by_position(torchvision_state, get_backbone("timm/test_efficientnet").build())
