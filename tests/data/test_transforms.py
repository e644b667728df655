import torch
from helpers import SAMPLE
from PIL import Image
from torchvision.transforms import v2

from foldertune.data.images import open_image
from foldertune.data.transforms import (
    Preprocessing,
    build_eval_transform,
    build_train_transform,
    decode_min_side,
    model_input,
    normalize_batch,
)

PHOTO = SAMPLE / "monuments" / "monument1.webp"


def test_eval_transform_is_resize_then_center_crop_as_uint8():
    pre = Preprocessing(crop_size=224, resize_size=256)
    image = open_image(PHOTO)
    out = build_eval_transform(pre)(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8
    reference = v2.Compose([v2.Resize(256), v2.CenterCrop(224), v2.PILToTensor()])(image)
    assert torch.equal(out, reference)


def test_train_transform_crops_to_size_and_varies():
    pre = Preprocessing(crop_size=96, resize_size=110)
    image = open_image(PHOTO)
    transform = build_train_transform(pre)
    torch.manual_seed(0)
    first, second = transform(image), transform(image)
    assert first.shape == second.shape == (3, 96, 96)
    assert not torch.equal(first, second)


def test_img_size_keeps_the_resize_crop_ratio():
    pre = Preprocessing(crop_size=224, resize_size=256).with_crop_size(112)
    assert (pre.crop_size, pre.resize_size) == (112, 128)
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_normalize_batch_matches_torchvision_normalize():
    pre = Preprocessing()
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = v2.Normalize(pre.mean, pre.std)(batch.float() / 255)
    assert torch.allclose(normalize_batch(batch, pre), expected, atol=1e-5)


def test_evaluation_decodes_at_least_the_resize_size():
    assert decode_min_side(Preprocessing(crop_size=224, resize_size=256)) == 256


def test_an_extremely_elongated_image_stays_small_at_evaluation():
    strip = Image.new("RGB", (20000, 2), (255, 0, 0))  # 40,000 pixels, harmless on disk
    transform = build_eval_transform(Preprocessing(crop_size=224, resize_size=256))
    resized = transform.transforms[1](transform.transforms[0](strip))
    assert max(resized.size) <= 8 * 256  # not 2.5 million x 256 pixels (2 GB) on the way
    assert transform(strip).shape == (3, 224, 224)


def test_model_input_is_normalize_batch_in_the_asked_layout():
    pre = Preprocessing(crop_size=32, resize_size=37)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    expected = normalize_batch(images, pre)
    for channels_last in (True, False):
        inputs = model_input(images, pre, device=torch.device("cpu"), channels_last=channels_last)
        assert torch.equal(inputs, expected)  # the same numbers, bit for bit
        assert inputs.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
