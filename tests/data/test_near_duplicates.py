"""Near-duplicates on real photos: resized, re-encoded and mirrored copies are found, distinct photos are not; a
near copy across splits is a leak, across classes a label conflict; splitting keeps near copies together."""

import os

import numpy as np
import pytest
from helpers import SAMPLE, copy_subset, read_csv, run_cli
from PIL import Image, ImageOps

import foldertune
from foldertune.data.near_duplicates import (
    connected_groups,
    embedding_pairs,
    find_near_pairs,
    hash_pairs,
    perceptual_hashes,
)
from foldertune.data.scan import scan_folder


def findings(report):
    return {os.path.basename(path): {f.kind for f in found} for path, found in report.findings.items()}


@pytest.fixture(scope="module")
def sample_hashes():
    paths = [record.path for record in scan_folder(SAMPLE, decode="header", progress=False).images]
    return paths, perceptual_hashes(paths, progress=False)


def test_no_two_distinct_photos_of_the_sample_are_near_duplicates(sample_hashes):
    paths, hashes = sample_hashes
    assert len(paths) == 138 and (hashes != 0).all()
    assert hash_pairs(hashes) == []


def test_pictures_of_one_colour_are_not_near_copies_of_each_other(tmp_path):
    data = copy_subset(tmp_path / "data", 4, {"fishes": "fish", "tools": "tool"})
    plain = {"red.png": ((255, 0, 0), (8, 8)), "strip.png": ((0, 255, 0), (4000, 100)),
             "blue.jpg": ((0, 0, 255), (600, 600)), "white.png": ((255, 255, 255), (50, 50))}  # fmt: skip
    for name, (colour, size) in plain.items():
        Image.new("RGB", size, colour).save(data / "tool" / name)
    report = foldertune.check(data, progress=False)
    assert report.near_pairs == [], report.near_pairs  # the same pHash (only the mean above the median), no copies
    copy = data / "fish" / "copy.png"
    Image.open(sorted((data / "fish").iterdir())[0]).convert("RGB").resize((200, 150)).save(copy)
    assert len(foldertune.check(data, progress=False).near_pairs) == 1  # a real near copy still is one


def test_resized_re_encoded_and_mirrored_copies_are_found(sample_hashes, tmp_path):
    paths, _ = sample_hashes
    copies = []
    for k, path in enumerate(paths[::23]):  # six photos of different classes
        photo = Image.open(path).convert("RGB")
        variants = {
            f"{k}-half.png": photo.resize((photo.width // 2, photo.height // 2)),
            f"{k}-q60.jpg": photo,
            f"{k}-mirror.png": ImageOps.mirror(photo),
        }
        for name, image in variants.items():
            image.save(tmp_path / name, quality=60)
            copies.append((path, str(tmp_path / name)))
    found = {(p.first, p.second) for p in find_near_pairs([*paths[::23], *(c for _, c in copies)], progress=False)}
    assert set(copies) <= found
    family = {copy: original for original, copy in copies} | {original: original for original, _ in copies}
    assert all(family[a] == family[b] for a, b in found)  # copies of one photo pair with each other, nothing else
    assert len(found) == 6 * 6  # six photos, four files each: every pair of the four
    mirrored = [p for p in find_near_pairs([copies[2][0], copies[2][1]], progress=False)]
    assert mirrored and mirrored[0].how.startswith("mirrored")


def test_look_alikes_close_in_the_coarse_hash_are_not_copies(sample_hashes, tmp_path):
    """Uniform data (small garments on black) has distinct pictures within 4 bits of 64; the finer hash parts them."""
    from PIL import ImageFilter

    paths, _ = sample_hashes
    pictures = []
    for k in range(0, 24, 2):  # each: one photo's coarse layout with another photo's fine detail
        layout = Image.open(paths[k]).convert("RGB")
        detail = Image.open(paths[k + 1]).convert("RGB").resize(layout.size)
        low = layout.resize((16, 16), Image.Resampling.BOX).resize(layout.size, Image.Resampling.BICUBIC)
        fine = np.asarray(detail, np.float32) - np.asarray(detail.filter(ImageFilter.GaussianBlur(layout.width / 64)))
        look_alike = np.clip(np.asarray(low, np.float32) + 0.8 * fine, 0, 255).astype(np.uint8)
        Image.fromarray(look_alike).save(tmp_path / f"{k}.png")
        pictures += [paths[k], str(tmp_path / f"{k}.png")]
    candidates = [(i, j) for i, j, _ in hash_pairs(perceptual_hashes(pictures, progress=False))]
    assert len([(i, j) for i, j in candidates if j == i + 1 and i % 2 == 0]) >= 6  # most pass the coarse hash
    assert find_near_pairs(pictures, progress=False) == []


def test_the_feature_search_in_blocks_finds_what_the_full_matrix_finds():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 16)).astype(np.float32)
    features[7] = features[3] * 2 + rng.normal(scale=0.05, size=16)  # same direction: cosine near 1
    features[40] = features[3] + rng.normal(scale=0.1, size=16)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    reach = 1 - np.sort(full, axis=1)[:, -20]  # distance to the 20th nearest
    expected = {(i, j) for i in range(50) for j in range(i + 1, 50)
                if full[i, j] >= 0.9 and 1 - full[i, j] <= 0.3 * min(reach[i], reach[j])}  # fmt: skip
    assert expected >= {(3, 7), (3, 40)}
    for block in (1, 7, 64):
        assert {(i, j) for i, j, _ in embedding_pairs(features, min_cosine=0.9, block=block)} == expected
    assert connected_groups(50, embedding_pairs(features, min_cosine=0.9)) == [[3, 7, 40]]


def test_look_alikes_in_uniform_data_are_not_copies_but_a_copy_among_them_is():
    rng = np.random.default_rng(1)
    common = rng.normal(size=64)
    features = (common + rng.normal(scale=0.25, size=(300, 64))).astype(np.float32)  # every pair near cosine 0.94
    features[299] = features[5] + rng.normal(scale=0.02, size=64)  # one real copy
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert np.mean(unit @ unit.T >= 0.9) > 0.9  # a bare threshold would call nearly every pair a copy
    assert [(i, j) for i, j, _ in embedding_pairs(features)] == [(5, 299)]


def test_a_resized_copy_in_val_of_a_train_image_is_a_leak(tmp_path):
    root = copy_subset(tmp_path / "data" / "train", 4, {"fishes": "fish", "tools": "tool"}).parent
    for label in ("fish", "tool"):
        (root / "val" / label).mkdir(parents=True)
    for photo in sorted((SAMPLE / "fishes").iterdir())[10:13]:
        Image.open(photo).save(root / "val" / "fish" / photo.name)
    for photo in sorted((SAMPLE / "tools").iterdir())[10:13]:
        Image.open(photo).save(root / "val" / "tool" / photo.name)
    source = root / "train" / "fish" / sorted(os.listdir(root / "train" / "fish"))[0]
    photo = Image.open(source).convert("RGB")
    photo.resize((photo.width // 2, photo.height // 2)).save(root / "val" / "fish" / "smaller.jpg", quality=85)
    done = run_cli("check", str(root), "--out", str(tmp_path / "check.csv"), "--quiet")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "leak: 2 file(s)" in done.stdout and "near copy in train" in done.stdout
    rows = {os.path.basename(row["path"]): row for row in read_csv(tmp_path / "check.csv")}
    assert rows["smaller.jpg"]["findings"] == "leak" and rows["smaller.jpg"]["status"] == "warning"
    assert rows["smaller.jpg"]["near_duplicate_of"] == str(source)
    assert rows[source.name]["near_duplicate_of"] == str(root / "val" / "fish" / "smaller.jpg")
    assert rows["smaller.jpg"]["duplicate_group"] == ""  # not the same bytes


def test_a_mirrored_copy_in_another_class_is_a_label_conflict_and_fast_skips_the_search(tmp_path):
    root = copy_subset(tmp_path / "data", 4, {"fishes": "fish", "tools": "tool"})
    source = root / "fish" / sorted(os.listdir(root / "fish"))[1]
    ImageOps.mirror(Image.open(source).convert("RGB")).save(root / "tool" / "flipped.png")
    report = foldertune.check(root, progress=False)
    assert findings(report)["flipped.png"] == findings(report)[source.name] == {"label conflict"}
    assert "near copy in class 'fish'" in report.summary()
    assert not foldertune.check(root, fast=True, progress=False).near_pairs  # headers only: no pixels to hash


def test_splitting_keeps_near_copies_in_one_split(tmp_path):
    root = copy_subset(tmp_path / "data", 8, {"fishes": "fish", "tools": "tool"})
    for photo in sorted((root / "fish").iterdir()):
        image = Image.open(photo).convert("RGB")
        image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(root / "fish" / f"{photo.stem} small.jpg")
    done = run_cli("split", str(root), "--val", "0.5", "--manifest", str(tmp_path / "split.csv"), "--quiet")
    assert done.returncode == 0, done.stderr
    split_of = {row["path"]: row["split"] for row in read_csv(tmp_path / "split.csv")}
    fish = sorted(p for p in split_of if "/fish/" in p and not p.endswith(" small.jpg"))
    assert {split_of[p] for p in fish} == {"train", "val"}
    for path in fish:
        assert (
            split_of[path] == split_of[str(root / "fish" / f"{os.path.splitext(os.path.basename(path))[0]} small.jpg")]
        )
