"""Each transfer mode trains exactly what it should: compare every parameter and buffer before and after steps."""

import torch
from torch import nn

from foldertune.models.build import apply_mode, build_model, head_parameter_names, set_train_mode

NAME = "mobilenet_v3_small"  # small and has BatchNorm and Dropout


def pretrained_like_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(42)  # stands in for ImageNet weights: what matters is that they are loaded and then kept
    return build_model(NAME, num_classes=None).state_dict()


def train_steps(model: nn.Module, mode: str, steps: int = 2) -> None:
    apply_mode(model, NAME, mode)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    for _ in range(steps):
        set_train_mode(model, NAME, mode)
        loss = nn.functional.cross_entropy(model(torch.rand(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def changed(before, after) -> set[str]:
    return {key for key in before if not torch.equal(before[key], after[key])}


def test_pretrained_weights_are_loaded_except_the_head():
    state = pretrained_like_state()
    model = build_model(NAME, num_classes=3, state_dict=state)
    for key, value in model.state_dict().items():
        if not key.startswith("classifier.3."):
            assert torch.equal(value, state[key]), key


def test_linear_mode_changes_only_the_head_and_freezes_batchnorm_statistics():
    model = build_model(NAME, num_classes=3, state_dict=pretrained_like_state())
    before = snapshot(model)
    train_steps(model, "linear")
    assert changed(before, snapshot(model)) == head_parameter_names(model, NAME)
    assert model.get_submodule("features").training is False  # backbone stays in eval mode


def test_finetune_mode_changes_backbone_weights_and_statistics_too():
    model = build_model(NAME, num_classes=3, state_dict=pretrained_like_state())
    before = snapshot(model)
    train_steps(model, "finetune")
    moved = changed(before, snapshot(model))
    assert head_parameter_names(model, NAME) <= moved
    assert any(k.startswith("features.0.0.") for k in moved)  # the first convolution
    assert any(k.endswith("running_mean") for k in moved)  # BatchNorm statistics
    assert all(p.requires_grad for p in model.parameters())


def test_scratch_mode_starts_from_random_weights_and_trains_everything():
    pretrained = pretrained_like_state()
    torch.manual_seed(7)
    model = build_model(NAME, num_classes=3)  # scratch: no state_dict
    assert not torch.equal(model.state_dict()["features.0.0.weight"], pretrained["features.0.0.weight"])
    before = snapshot(model)
    train_steps(model, "scratch")
    moved = changed(before, snapshot(model))
    trainable = {k for k, _ in model.named_parameters()}
    assert trainable <= moved
