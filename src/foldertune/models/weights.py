"""Load a backbone's ImageNet weights as a state_dict, from `--weights FILE` or the file weight_files.py finds.

    state, origin = resolve_weights(get_backbone("mobilenet_v2"))  # dict of tensors (hash checked), where from
    state = load_weights_file("my_weights.pth")                    # a state_dict, .safetensors or our checkpoint

Finding (and fetching) the file needs no torch, so the command line does it before scanning the data (see
weight_files.py for the sources, in order); this module loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from foldertune.errors import UserError
from foldertune.models.registry import Backbone
from foldertune.models.timm_backbones import TimmBackbone
from foldertune.models.weight_files import fetch_weights_file, hub_checkpoint_dir
from foldertune.runs.checkpoint import FORMAT, safe_load

__all__ = ["hub_checkpoint_dir", "load_weights_file", "resolve_weights"]


def resolve_weights(
    backbone: Backbone | TimmBackbone, *, weights_file: str | os.PathLike | None = None, log=print
) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's pretrained state_dict from the first source that has it, and that source in words."""
    if weights_file is not None:
        return load_weights_file(weights_file), f"--weights {Path(weights_file).absolute()}"
    path, origin = fetch_weights_file(backbone, log=log)
    return (load_weights_file(path) if path.suffix == ".safetensors" else _load_state_dict(path)), origin


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a .pth/.pt (plain state_dict or foldertune checkpoint) or .safetensors file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--weights file '{path}' does not exist.")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError("--weights is a .safetensors file: install it with `pip install safetensors`.") from None
        from safetensors import SafetensorError

        try:
            return load_file(str(path))
        except SafetensorError as error:  # a truncated download, or another file renamed
            raise UserError(f"'{path}' is not a readable .safetensors file ({error}); download it again.") from None
    return _load_state_dict(path)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    raw = safe_load(path)
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        raw = raw["model"]
    elif isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]  # Lightning and many training scripts
    elif isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise UserError(f"'{path}' does not hold a state_dict (a mapping of parameter names to tensors).")
    return {key.removeprefix("module."): value for key, value in raw.items()}
