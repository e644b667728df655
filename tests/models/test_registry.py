import pytest
import torch
from torch import nn

from foldertune.errors import UserError
from foldertune.models.build import build_model
from foldertune.models.registry import Backbone, get_backbone, list_backbones, register

NAMES = [b.name for b in list_backbones()]
REQUIRED = {"resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "efficientnet_b0", "convnext_tiny"}  # fmt: skip


def test_the_required_backbones_are_registered():
    assert set(NAMES) >= REQUIRED


@pytest.mark.parametrize("name", NAMES)
def test_backbone_gets_a_new_head_with_one_output_per_class(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3).eval()
    head = model.get_submodule(get_backbone(name).head)
    assert isinstance(head, nn.Linear) and head.out_features == 3
    assert head.in_features == get_backbone(name).features
    cam_layer = model.get_submodule(get_backbone(name).cam_layer)
    activations = []
    cam_layer.register_forward_hook(lambda module, inputs, output: activations.append(output))
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))
    assert activations[0].ndim == 4 and activations[0].shape[-1] == 2  # the last stage: stride 32 on 64 px
    with torch.inference_mode():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_declared_preprocessing_matches_torchvision(name):
    backbone = get_backbone(name)
    reference = backbone.weights.transforms()
    pre = backbone.preprocessing
    assert [pre.crop_size] == list(reference.crop_size)
    assert [pre.resize_size] == list(reference.resize_size)
    assert pre.interpolation == reference.interpolation.value
    assert list(pre.mean) == list(reference.mean) and list(pre.std) == list(reference.std)
    assert backbone.weights_url == backbone.weights.url and "-" in backbone.weights_file  # declared, as torchvision


def test_unknown_backbone_names_the_choices_and_a_near_match():
    with pytest.raises(UserError, match=r"did you mean 'resnet18'.*mobilenet_v2"):
        get_backbone("resnet-18")


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="twice"):
        register(
            Backbone(
                "resnet18",
                "ResNet18_Weights.IMAGENET1K_V1",
                "fc",
                512,
                "layer4",
                get_backbone("resnet18").preprocessing,
            )
        )


@pytest.mark.parametrize("name", [backbone.name for backbone in list_backbones()])
def test_fused_inference_copy_gives_the_same_outputs(name):
    import torch

    from foldertune.models.build import build_model, capture_head_input, fuse_for_inference

    torch.manual_seed(0)
    model = build_model(name, 3)
    for module in model.modules():  # BatchNorm statistics as a trained network has them, not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    fused = fuse_for_inference(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode(), capture_head_input(fused, name) as captured:
        expected, got = model(x), fused(x)
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)
    assert captured and captured[0].shape == (2, get_backbone(name).features)  # the head is still hookable
    has_batchnorm = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert fused is not model and (
        not has_batchnorm or not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    )
