import os
from collections import Counter

import pytest
from helpers import SAMPLE, copy_subset, run_cli, tree_fingerprint

from foldertune.data.scan import ImageRecord, scan_folder
from foldertune.data.split import assign_splits, materialize, read_manifest, split_sizes, write_manifest
from foldertune.errors import UserError


@pytest.fixture(scope="module")
def sample_images():
    return scan_folder(SAMPLE, progress=False).images


def splits(records):
    return {r.path: r.split for r in records}


def test_split_is_deterministic_for_a_seed_and_changes_with_it(sample_images):
    first, _ = assign_splits(sample_images, val_fraction=0.2, test_fraction=0.1, seed=0)
    again, _ = assign_splits(list(reversed(sample_images)), val_fraction=0.2, test_fraction=0.1, seed=0)
    other, _ = assign_splits(sample_images, val_fraction=0.2, test_fraction=0.1, seed=1)
    assert splits(first) == splits(again)  # input order does not matter
    assert splits(first) != splits(other)


def test_split_is_stratified_per_class(sample_images):
    records, warnings = assign_splits(sample_images, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert warnings == []
    counts = Counter((r.label, r.split) for r in records)
    for label, total in Counter(r.label for r in sample_images).items():
        assert counts[label, "val"] == max(1, int(total * 0.2 + 0.5))
        assert counts[label, "test"] == max(1, int(total * 0.1 + 0.5))
        assert counts[label, "train"] == total - counts[label, "val"] - counts[label, "test"]
    assert len(records) == len(sample_images)


def test_a_class_split_does_not_depend_on_other_classes(sample_images):
    full, _ = assign_splits(sample_images, val_fraction=0.2, test_fraction=0.0, seed=3)
    only_fish = [r for r in sample_images if r.label == "fishes"]
    alone, _ = assign_splits(only_fish, val_fraction=0.2, test_fraction=0.0, seed=3)
    assert {p: s for p, s in splits(full).items() if "/fishes/" in p} == splits(alone)


def test_too_small_class_goes_to_train_with_a_warning():
    images = [ImageRecord(f"/d/big/{i}.jpg", "big", None) for i in range(10)] + [
        ImageRecord("/d/tiny/1.jpg", "tiny", None)
    ]
    records, warnings = assign_splits(images, val_fraction=0.2, test_fraction=0.0, seed=0)
    assert [r.split for r in records if r.label == "tiny"] == ["train"]
    assert len(warnings) == 1 and "tiny" in warnings[0]
    assert split_sizes(2, 0.2, 0.0) == (1, 0)
    assert split_sizes(3, 0.5, 0.4) == (1, 1)  # rounding never leaves train empty
    assert split_sizes(2, 0.2, 0.1) is None


def test_given_splits_are_kept_and_val_is_drawn_from_train_when_missing():
    given = [ImageRecord(f"/d/train/a/{i}.jpg", "a", "train") for i in range(10)]
    given += [ImageRecord(f"/d/test/a/{i}.jpg", "a", "test") for i in range(3)]
    records, _ = assign_splits(given, val_fraction=0.2, test_fraction=0.3, seed=0)
    counts = Counter(r.split for r in records)
    assert counts == {"train": 8, "val": 2, "test": 3}
    with_val = [*given, ImageRecord("/d/val/a/1.jpg", "a", "val")]
    assert splits(assign_splits(with_val, val_fraction=0.2, test_fraction=0, seed=0)[0]) == splits(with_val)


def test_manifest_round_trip_with_relative_and_chinese_paths(tmp_path):
    records = [
        ImageRecord(str(tmp_path / "鱼" / "1.jpg"), "鱼", "train"),
        ImageRecord(str(tmp_path / "b c" / "2.jpg"), "b c", "val"),
    ]
    write_manifest(tmp_path / "split.csv", records)
    assert read_manifest(tmp_path / "split.csv") == records
    (tmp_path / "rel.csv").write_text("path,class,split\n鱼/1.jpg,鱼,TRAIN\n", encoding="utf-8")
    assert read_manifest(tmp_path / "rel.csv") == [ImageRecord(str(tmp_path / "鱼" / "1.jpg"), "鱼", "train")]
    (tmp_path / "bad.csv").write_text("path,class,split\na.jpg,a,holdout\n")
    with pytest.raises(UserError, match="line 2"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("file,label\na.jpg,a\n")
    with pytest.raises(UserError, match="lacks the column"):
        read_manifest(tmp_path / "cols.csv")


def test_a_manifest_that_lists_a_file_twice_is_refused_by_check_and_train(tmp_path):
    data = copy_subset(tmp_path / "data", 3, {"fishes": "fish", "tools": "tool"})
    fish = sorted((data / "fish").iterdir())
    rows = [f"{fish[0]},fish,train", *(f"{p},tool,train" for p in sorted((data / "tool").iterdir())),
            f"{fish[1]},fish,val", f"data/fish/./{fish[0].name},fish,val"]  # fmt: skip
    (tmp_path / "joined.csv").write_text("path,class,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
    expected = (f"manifest '{tmp_path / 'joined.csv'}' lists 'data/fish/./{fish[0].name}' twice (lines 2 and 7); "
                "keep one row per file, with the class and split it should have.")  # fmt: skip
    manifest = str(tmp_path / "joined.csv")
    for command in (["check", manifest, "--out", str(tmp_path / "c.csv")],
                    ["train", "--manifest", manifest, "--project", str(tmp_path / "runs")]):  # fmt: skip
        done = run_cli(*command)
        assert done.returncode == 2 and done.stderr.strip().endswith(expected), done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("how", ["copy", "link"])
def test_materialize_builds_split_folders_and_leaves_originals(tmp_path, how):
    data = copy_subset(tmp_path / "data", 5, {"fishes": "fish", "tools": "tool"})
    (data / "fish" / "sub").mkdir()
    os.rename(data / "fish" / "fish1.webp", data / "fish" / "sub" / "fish1.webp")
    before = tree_fingerprint(data)
    scan = scan_folder(data, progress=False)
    records, _ = assign_splits(scan.images, val_fraction=0.4, test_fraction=0.0, seed=0)
    out = materialize(records, scan.root, tmp_path / "out", how=how)
    assert tree_fingerprint(data) == before
    made = sorted(p for p in out.rglob("*") if p.is_file() or p.is_symlink())
    assert len(made) == 10
    assert all((p.is_symlink() if how == "link" else not p.is_symlink()) for p in made)
    rescanned = scan_folder(out, progress=False)
    assert rescanned.presplit and Counter(r.split for r in rescanned.images) == {"train": 6, "val": 4}
    assert any(p.parts[-2] == "sub" for p in made)  # sub-folders inside a class are kept
    with pytest.raises(UserError, match="not empty"):
        materialize(records, scan.root, out, how=how)
    with pytest.raises(UserError, match="inside the data folder"):
        materialize(records, scan.root, data / "split", how=how)
    os.symlink(data, tmp_path / "alias")  # the same folder reached through a link, or through ".."
    for sneaky in (tmp_path / "alias" / "inside", tmp_path / "out" / ".." / "data" / "inside"):
        with pytest.raises(UserError, match="inside the data folder"):
            materialize(records, scan.root, sneaky, how=how)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        materialize(records, scan.root, tmp_path / "a_file", how=how)
    assert tree_fingerprint(data) == before
