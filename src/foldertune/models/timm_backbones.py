"""Any timm model as a backbone: `--model timm/NAME` (pip install 'foldertune[timm]').

    backbone = get_backbone("timm/convnext_atto")       # a TimmBackbone, built from timm's own declaration
    backbone.head                 # 'head.fc': the nn.Linear that gets one output per class (timm's `classifier`)
    backbone.preprocessing        # from timm's pretrained configuration: size, crop fraction, mean, std, filter
    model = backbone.build(5)     # timm.create_model("convnext_atto", num_classes=5), random weights
    layer, reshape = cam_target(model)                  # where Grad-CAM looks (a token grid for ViTs)
    path, origin = find_timm_weights(backbone)          # the Hugging Face cache, else a download, else a UserError

timm declares, next to each model, its input size, crop fraction, mean, std and interpolation (its "pretrained
configuration"); that is read here and becomes the run's Preprocessing, stored in the checkpoint as for the
registered backbones. The head is the module timm names as the classifier, always an nn.Linear once the model is
built with a number of classes; the frozen features of linear mode are what that layer receives (the pooled
features, or a ViT's class token after its final norm, as timm's `forward_head` computes them).

ViTs (fixed_input_size in timm) are built for one image side: their position embeddings have one entry per
patch. `--img-size` builds them for another side, which must be a multiple of the patch size, and timm's own
checkpoint filter resamples pretrained position embeddings to it when the weights are loaded.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from foldertune.errors import UserError
from foldertune.preprocessing import Preprocessing

if TYPE_CHECKING:
    import torch
    from torch import nn

PREFIX = "timm/"
INSTALL = "pip install 'foldertune[timm]'"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's Hugging Face repositories hold, preferred first
PROBE_TIMEOUT_S = 3  # seconds to reach the Hugging Face endpoint before counting as offline
FILTERS = {"bilinear", "bicubic", "nearest"}


@dataclass(frozen=True)
class TimmBackbone:
    name: str  # "timm/" + timm's model name, as given to --model (an optional ".tag" picks the pretrained weights)
    model_name: str  # timm's name, e.g. "vit_small_patch14_dinov2.lvd142m"
    head: str  # dotted path of the final nn.Linear (timm's pretrained_cfg["classifier"])
    preprocessing: Preprocessing
    fixed_input_size: bool  # a ViT-like model: built for one image side
    hf_hub_id: str  # the Hugging Face repository of the pretrained weights ("" when timm has none there)
    url: str  # timm's other download address ("" when none)
    classes: int  # outputs of the pretrained head (0: the weights have none, e.g. DINOv2)

    def build(self, num_classes: int | None = None, *, img_size: int | None = None) -> nn.Module:
        """timm's model with random weights and `num_classes` outputs (None: as many as the pretrained head), for
        `img_size` pixels when the model is built for one size."""
        import timm
        import torch

        kwargs = {}
        if self.fixed_input_size and img_size and img_size != self.preprocessing.crop_size:
            kwargs["img_size"] = img_size
            with torch.device("meta"):  # the shapes alone, instantly: is the side a whole number of patches?
                patch = _patch_size(timm.create_model(self.model_name, pretrained=False, **kwargs))
            if patch and img_size % patch:
                low, high = max(patch, img_size // patch * patch), (img_size // patch + 1) * patch
                raise UserError(f"--img-size {img_size} is not a multiple of {self.name}'s patch size {patch}: use "
                                f"{low} or {high}.")  # fmt: skip
        classes = num_classes if num_classes is not None else (self.classes or 1)  # no pretrained head: a stand-in
        return timm.create_model(self.model_name, pretrained=False, num_classes=classes, **kwargs)

    def adapt(self, state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        """Weights as `model` needs them: timm's own filter for the model's family (position embeddings resampled
        to its image size, original layouts renamed to timm's)."""
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        return dict(filter_fn(state_dict, model)) if filter_fn else state_dict

    @property
    def weights_source(self) -> str:
        return f"https://huggingface.co/{self.hf_hub_id}" if self.hf_hub_id else self.url


def is_timm_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


@functools.cache
def timm_backbone(name: str) -> TimmBackbone:
    """The backbone for `--model timm/NAME`; a UserError when timm is missing or has no such model."""
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise UserError(f"--model {name} needs the timm library: {INSTALL}.") from None
    model_name = name.removeprefix(PREFIX)
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name.split(".")[0], timm.list_models(), n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise UserError(f"timm has no model {model_name!r} (--model {name}){hint}; `foldertune models --timm 'PATTERN'`"
                        " lists them.")  # fmt: skip
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not isinstance(cfg.classifier, str):
        raise UserError(f"--model {name}: foldertune needs a model with one classifier layer; this one has "
                        f"{cfg.classifier if cfg else 'none'} (distilled models are not supported).")  # fmt: skip
    data = resolve_data_config({}, pretrained_cfg=cfg.to_dict())
    crop = int(data["input_size"][-1])
    pre = Preprocessing(
        crop_size=crop,
        resize_size=math.floor(crop / data["crop_pct"]),  # timm's eval transform: resize to crop / crop_pct, crop
        interpolation=data["interpolation"] if data["interpolation"] in FILTERS else "bicubic",
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
    )
    return TimmBackbone(name, model_name, cfg.classifier, pre, bool(cfg.fixed_input_size), cfg.hf_hub_id or "",
                        cfg.url or "", int(cfg.num_classes or 0))  # fmt: skip


def cam_target(model: nn.Module) -> tuple[nn.Module, Callable | None]:
    """The layer Grad-CAM looks at, and how its output becomes (N, C, H, W) (None: it already is).

    ViT-like models (patch_embed + blocks): the last block's first norm, its patch tokens laid back on their grid;
    other models: the last stage timm lists in `feature_info` (channels-last stages are permuted).
    """
    if all(hasattr(model, key) for key in ("patch_embed", "blocks", "num_prefix_tokens")):
        prefix, patch = model.num_prefix_tokens, _patch_size(model)

        def tokens_to_grid(tokens):  # (N, prefix + h*w, C) -> (N, C, h, w)
            grid = tokens[:, prefix:]
            side = math.isqrt(grid.shape[1])
            if patch is None or side * side != grid.shape[1]:
                raise UserError("Grad-CAM needs a square grid of patch tokens; explain this model at a square size.")
            return grid.reshape(grid.shape[0], side, side, grid.shape[2]).permute(0, 3, 1, 2)

        return model.blocks[-1].norm1, tokens_to_grid
    info = getattr(model, "feature_info", None)
    if not info:
        raise UserError(f"Grad-CAM has no layer to look at in {type(model).__name__}: timm lists no feature stages.")
    layer = model.get_submodule(info[-1]["module"])
    if getattr(model, "output_fmt", "NCHW") == "NHWC":  # e.g. Swin: stages hand over (N, H, W, C)
        return layer, lambda output: output.permute(0, 3, 1, 2)
    return layer, None


def find_timm_weights(backbone: TimmBackbone, *, log=print) -> tuple[Path, str]:
    """The pretrained weights file: the Hugging Face cache, else a download into it (unless offline); a UserError
    naming the repository, the cache folder, --weights and --no-pretrained otherwise."""
    if not backbone.hf_hub_id:
        raise UserError(f"timm has no Hugging Face copy of {backbone.name}'s weights ({backbone.url or 'none'}): "
                        "download them yourself and pass --weights FILE, or train with --no-pretrained.")  # fmt: skip
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    for filename in WEIGHT_FILES:
        cached = try_to_load_from_cache(backbone.hf_hub_id, filename)
        if isinstance(cached, str):
            return Path(cached), f"Hugging Face cache {cached}"
    why = _offline_reason(constants)
    if why is None:
        for filename in WEIGHT_FILES:
            try:
                log(f"downloading {filename} of {backbone.hf_hub_id} into the Hugging Face cache ...")
                return Path(hf_hub_download(backbone.hf_hub_id, filename)), f"Hugging Face ({backbone.hf_hub_id})"
            except Exception as error:  # missing file, HTTP or network errors: try the next file, then say why
                why = f"download failed: {str(error).strip().splitlines()[0][:160]}"
    raise UserError(
        f"no pretrained weights for {backbone.name} ({why}): put {backbone.hf_hub_id}'s model.safetensors in the "
        f"Hugging Face cache {constants.HF_HUB_CACHE} (on a machine with a network: `hf download "
        f"{backbone.hf_hub_id}`, then copy that folder), pass --weights FILE, or train with --no-pretrained."
    )


def _offline_reason(constants) -> str | None:
    """Why nothing can be downloaded (HF_HUB_OFFLINE, or the endpoint unreachable in a few seconds); None: online.
    The probe keeps a machine without a network from waiting on huggingface_hub's retries."""
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        return f"{endpoint.hostname} unreachable: {error}"
    return None


def list_pretrained(pattern: str) -> list[str]:
    """timm's names with pretrained weights that match a shell-style pattern, e.g. 'convnext*'."""
    try:
        import timm
    except ImportError:
        raise UserError(f"--timm needs the timm library: {INSTALL}.") from None
    return timm.list_models(pattern, pretrained=True)


def cached_in_hub(repo: str) -> bool:
    """Whether the Hugging Face cache holds the weights of `repo` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, filename), str) for filename in WEIGHT_FILES)


def _patch_size(model: nn.Module) -> int | None:
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if patch is None:
        return None
    return int(patch[0] if isinstance(patch, (tuple, list)) else patch)
