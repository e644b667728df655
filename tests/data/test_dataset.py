import torch
from helpers import SAMPLE
from torch.utils.data import DataLoader

from foldertune.data.dataset import EpochBatchSampler, ImageDataset
from foldertune.data.readers import TrainReader
from foldertune.preprocessing import Preprocessing

SAMPLES = [(str(p), i % 2) for i, p in enumerate(sorted((SAMPLE / "fishes").iterdir())[:6])]


def make_dataset(seed: int = 0) -> ImageDataset:
    return ImageDataset(SAMPLES, TrainReader(Preprocessing(64, 73)), seed=seed, augment=True)


def test_augmentation_depends_only_on_seed_epoch_and_index():
    dataset = make_dataset()
    torch.manual_seed(123)
    a, label = dataset[(2, 5)]
    torch.manual_seed(999)  # the global generator's state does not matter ...
    b, _ = dataset[(2, 5)]
    assert torch.equal(a, b) and label == SAMPLES[2][1]
    assert not torch.equal(a, dataset[(2, 6)][0])  # ... but the epoch does
    assert not torch.equal(a, make_dataset(seed=1)[(2, 5)][0])  # ... and so does the seed
    state = torch.get_rng_state()
    dataset[(0, 0)]
    assert torch.equal(state, torch.get_rng_state())  # and reading leaves the caller's generator alone


def test_sampler_shuffles_per_epoch_reproducibly_and_drops_a_lone_last_image():
    sampler = EpochBatchSampler(9, 4, shuffle=True, seed=0)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert [len(b) for b in epoch1] == [4, 4] and len(sampler) == 2  # 9 = 4 + 4 + 1: the lone one waits
    assert all(epoch == 1 for batch in epoch1 for _, epoch in batch)
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    assert epoch1 != epoch2
    sampler.set_epoch(1)
    assert list(sampler) == epoch1
    ordered = EpochBatchSampler(9, 4, shuffle=False)
    assert [i for batch in ordered for i, _ in batch] == list(range(9)) and len(ordered) == 3


def test_batches_are_identical_with_and_without_worker_processes():
    def first_epoch(workers: int):
        sampler = EpochBatchSampler(len(SAMPLES), 3, shuffle=True, seed=4)
        sampler.set_epoch(3)
        loader = DataLoader(make_dataset(), batch_sampler=sampler, num_workers=workers)
        return [images for images, _ in loader]

    for a, b in zip(first_epoch(0), first_epoch(2), strict=True):
        assert torch.equal(a, b)


def test_a_file_that_vanished_after_the_scan_is_skipped_with_a_warning(tmp_path):
    import shutil
    import warnings

    kept = tmp_path / "kept.webp"
    shutil.copy(SAMPLES[0][0], kept)
    dataset = ImageDataset([(str(tmp_path / "gone.webp"), 1), (str(kept), 0)], TrainReader(Preprocessing(32, 37)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, label = dataset[0]
    assert label == 0 and image.shape == (3, 32, 32)
    assert any("gone.webp" in str(w.message) for w in caught)


def test_sampler_length_matches_what_it_yields_for_every_small_size():
    for size in range(12):
        for batch_size in range(1, 6):
            for shuffle in (True, False):
                sampler = EpochBatchSampler(size, batch_size, shuffle=shuffle)
                batches = list(sampler)
                assert len(batches) == len(sampler), (size, batch_size, shuffle)
                seen = sum(len(b) for b in batches)
                assert seen == size or (shuffle and batch_size > 1 and seen == size - 1)
