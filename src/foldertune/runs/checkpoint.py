"""Checkpoints: plain dicts of tensors and primitives, loadable with `torch.load(weights_only=True)`.

    save_checkpoint(run.best, make_checkpoint(model, ...))   # temp file + rename: never half-written
    checkpoint = load_checkpoint("runs/x")                   # its best.pt, validated; UserError when it is not ours

Keys: format, format_version, versions, backbone, classes, preprocessing, config, epoch, metrics, model (the
state_dict); last.pt adds training (optimizer, scheduler, scaler, best-so-far and patience state) for --resume.
Never a pickled model: that breaks across versions and runs code when loaded.
"""

from __future__ import annotations

import io
import os
import platform
import zipfile
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from foldertune import __version__
from foldertune.errors import UserError
from foldertune.preprocessing import Preprocessing
from foldertune.runs.atomic import atomic_open
from foldertune.runs.folder import locate_checkpoint

FORMAT = "foldertune.checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    return {
        "foldertune": __version__,
        "torch": str(torch.__version__),  # a TorchVersion object would need unpickling
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def _timm_version(backbone: str) -> dict[str, str]:
    """{"timm": its version} for a timm backbone (read from the installed package's metadata, no import)."""
    if not backbone.startswith("timm/"):
        return {}
    from importlib.metadata import version

    return {"timm": version("timm")}


def make_checkpoint(
    model: nn.Module,
    *,
    backbone: str,
    classes: list[str],
    preprocessing: Preprocessing,
    config: dict[str, Any],
    epoch: int,
    metrics: dict[str, float],
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict; `training` (optimizer, scheduler, ...) only for last.pt."""
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions() | _timm_version(backbone),
        "backbone": backbone,
        "classes": list(classes),
        "preprocessing": preprocessing.to_dict(),
        "config": config,
        "epoch": epoch,
        "metrics": dict(metrics),
        "model": {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()},
    }
    if training is not None:
        checkpoint["training"] = training
    return checkpoint


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over `path`."""
    buffer = io.BytesIO()  # torch.save would turn a full disk into an unhelpful RuntimeError; a plain write will not
    torch.save(checkpoint, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A foldertune checkpoint (a run folder means its best.pt), loaded safely and checked."""
    path, _ = locate_checkpoint(path)
    checkpoint = safe_load(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"'{path}' is not a foldertune checkpoint; use --weights to start training from other weights.")
    saved = checkpoint.get("format_version")
    if saved != FORMAT_VERSION:
        written_by = checkpoint.get("versions", {}).get("foldertune", "an unknown version")
        raise UserError(
            f"'{path}' uses checkpoint format {saved} (written by foldertune {written_by}); this foldertune "
            f"{__version__} reads format {FORMAT_VERSION}."
        )
    return checkpoint


def safe_load(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain data only, a UserError for anything else (a TorchScript
    export, pickled objects, a file torch cannot read)."""
    if _is_torchscript(path):
        raise UserError(f"'{path}' is a TorchScript export, for torch.jit.load in other programs; foldertune reads "
                        "run folders, their checkpoints (best.pt, last.pt) and ONNX exports (.onnx).")  # fmt: skip
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if "global" in str(error).lower():  # "Unsupported global: GLOBAL posix.system": a pickled object's class
            raise UserError(
                f"'{path}' holds pickled Python objects, not only tensors and plain data; foldertune loads files with "
                "weights_only=True and will not run code from a file: save a state_dict instead."
            ) from None
        raise UserError(f"'{path}' is not a PyTorch file (torch.load cannot read it).") from None


def _is_torchscript(path: Path) -> bool:
    """Whether `path` is a torch.jit.save archive: a zip file, as torch.save writes, that also holds code/."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())
