"""--augment: TrivialAugmentWide and RandAugment on the training crops, seeded like the rest of the augmentation."""

import pytest
import torch
from helpers import SAMPLE

from foldertune.data.images import open_image
from foldertune.data.readers import TrainReader
from foldertune.data.transforms import build_train_transform
from foldertune.preprocessing import Preprocessing

PRE = Preprocessing(crop_size=64, resize_size=73)
PHOTO = SAMPLE / "fishes" / "fish9.webp"


@pytest.mark.parametrize("augment", ["trivialwide", "randaugment"])
def test_a_policy_changes_the_training_crops_reproducibly_as_the_reference_transform_does(augment):
    def read(reader, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return reader(str(PHOTO))

    standard, policy = TrainReader(PRE), TrainReader(PRE, augment=augment)
    reference, full = build_train_transform(PRE, augment=augment), open_image(PHOTO)
    changed = 0
    for seed in range(8):
        augmented = read(policy, seed)
        assert augmented.shape == (3, 64, 64) and augmented.dtype == torch.uint8
        assert torch.equal(augmented, read(policy, seed))  # seeded per sample: a resumed run draws the same
        changed += not torch.equal(augmented, read(standard, seed))  # the same crop and flip, then the policy
        torch.manual_seed(seed)
        expected = reference(full)
        assert (augmented.float() - expected.float()).abs().mean() < 12, seed  # the same draws, up to resampling
    assert changed >= 6  # an identity operation may come up now and then, not for most crops
