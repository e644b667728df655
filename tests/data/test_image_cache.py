"""--cache ram|disk: each image decoded once, downsized, and the same pictures from memory or disk."""

import numpy as np
import pytest
from helpers import SAMPLE, copy_subset, read_csv
from PIL import Image

import foldertune as ft
from foldertune.data.image_cache import ImageCache
from foldertune.data.images import open_image
from foldertune.errors import UserError


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for i, source in enumerate(sorted((SAMPLE / "fishes").iterdir())[:3]):
        picture = Image.open(source).convert("RGB").resize((1200, 900), Image.Resampling.BICUBIC)
        picture.save(folder / f"big{i}.jpg", quality=92)  # larger than the cache keeps
        paths.append(str(folder / f"big{i}.jpg"))
    small = folder / "small.png"
    Image.open(sorted((SAMPLE / "tools").iterdir())[0]).convert("RGB").resize((150, 100)).save(small)
    return [*paths, str(small)]


def test_ram_cache_keeps_downsized_copies_of_the_same_pictures(photos):
    cache = ImageCache("ram", side=256)
    assert cache.fill(photos, progress=False) == 4
    assert cache.fill(photos, progress=False) == 0  # already kept
    for path in photos[:3]:
        kept = cache.open(path)
        assert min(kept.size) == 256 and kept.size == (341, 256)
        reference = open_image(path).resize(kept.size, Image.Resampling.BILINEAR)
        assert np.abs(np.asarray(kept, dtype=float) - np.asarray(reference, dtype=float)).mean() < 4
    assert cache.open(photos[3]).size == (150, 100)  # never enlarged
    sizes = []
    cache.open(photos[0], min_side=lambda width, height: sizes.append((width, height)) or 1)
    assert sizes == [(341, 256)]  # a reader's size hook sees the kept picture's size


def test_disk_cache_is_reused_by_a_later_run_and_misses_an_edited_file(photos, tmp_path):
    first = ImageCache("disk", side=256, root=tmp_path / "cache")
    assert first.fill(photos, progress=False) == 4
    later = ImageCache("disk", side=256, root=tmp_path / "cache")  # as a new process would
    assert later.fill(photos, progress=False) == 0
    assert np.array_equal(np.asarray(later.open(photos[1])), np.asarray(first.open(photos[1])))
    Image.open(photos[1]).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(photos[1], quality=92)
    edited = ImageCache("disk", side=256, root=tmp_path / "cache")
    assert edited.fill(photos, progress=False) == 1
    assert not np.array_equal(np.asarray(edited.open(photos[1])), np.asarray(first.open(photos[1])))


def test_an_unreadable_file_is_left_to_the_loader_to_report(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    cache = ImageCache("ram", side=256)
    assert cache.fill([*photos, str(broken)], progress=False) == 4
    from foldertune.data.images import ImageReadError

    with pytest.raises(ImageReadError):
        cache.open(str(broken))


def test_ram_cache_refuses_more_than_the_free_memory():
    with pytest.raises(UserError, match="--cache disk"):
        ImageCache("ram", side=448).fill(["x.jpg"] * 10_000_000, progress=False)


def without_times(path):
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in read_csv(path)]


def test_training_from_the_ram_and_the_disk_cache_is_identical(tmp_path, mobilenet_weights):
    data = copy_subset(tmp_path / "data", 6, {"fishes": "fishes", "tools": "tools"})
    settings = {"epochs": 2, "img_size": 64, "batch_size": 4, "workers": 1, "precision": "fp32", "quiet": True,
                "report": False, "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    ram = ft.train(data, cache="ram", project=tmp_path / "ram", **settings)
    disk = ft.train(data, cache="disk", project=tmp_path / "disk", **settings)
    assert without_times(ram / "epochs.csv") == without_times(disk / "epochs.csv")
    kept = {side: len(list((tmp_path / "cache" / "images" / side).rglob("*.npy"))) for side in ("128", "73")}
    assert kept == {"128": 10, "73": 2}  # training copies at twice the crop, validation ones at the resize size
