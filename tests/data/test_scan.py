import os
import shutil
import unicodedata

import pytest
from helpers import SAMPLE, copy_subset, tree_fingerprint, write_bad_images, write_good_images

from foldertune.data.scan import list_image_files, scan_folder
from foldertune.errors import UserError


def test_bundled_sample_is_five_classes_of_138_photos():
    result = scan_folder(SAMPLE, progress=False)
    assert result.classes == ["fishes", "monuments", "others", "renewable", "tools"]
    assert len(result.images) == 138
    assert result.unreadable == []
    assert not result.presplit


@pytest.fixture
def messy(tmp_path):
    """A folder with every kind of clutter, nesting, links and broken files a user's export can hold."""
    root = tmp_path / "messy"
    cats = root / "cats"
    write_good_images(cats)
    write_bad_images(root / "dogs")
    copy_subset(root / "dogs_tmp", 3, {"fishes": "x"})
    shutil.move(root / "dogs_tmp" / "x", root / "dogs" / "nested" / "deeper")
    shutil.rmtree(root / "dogs_tmp")
    (root / "dogs" / "notes.txt").write_text("labels by hand")
    # clutter, in and outside class folders
    (root / "__MACOSX" / "cats").mkdir(parents=True)
    shutil.copy(cats / "rgb.jpg", root / "__MACOSX" / "cats" / "._rgb.jpg")
    shutil.copy(cats / "rgb.jpg", cats / "._rgb.jpg")
    shutil.copy(cats / "rgb.jpg", cats / ".hidden.jpg")
    (cats / ".thumbnails").mkdir()
    shutil.copy(cats / "rgb.jpg", cats / ".thumbnails" / "t.jpg")
    for junk in ("Thumbs.db", "desktop.ini", ".DS_Store"):
        (cats / junk).write_bytes(b"\x00junk")
    (root / ".git").mkdir()
    (root / "README.md").write_text("about this data")
    shutil.copy(cats / "rgb.jpg", root / "stray.jpg")
    (root / "empty_class").mkdir()
    (root / "only_broken").mkdir()
    (root / "only_broken" / "zero.png").write_bytes(b"")
    # links: a loop back to the class folder, and a linked folder of photos from elsewhere
    os.symlink(cats, cats / "loop")
    outside = copy_subset(tmp_path / "outside", 2, {"tools": "tools"})
    os.symlink(outside / "tools", root / "dogs" / "linked")
    # a Chinese class name stored decomposed? (NFD only matters for accents) and with a space
    copy_subset(root, 2, {"monuments": "纪念碑 photos", "renewable": "Éoliennes"})
    os.rename(root / "Éoliennes", root / unicodedata.normalize("NFD", "Éoliennes"))
    return root


def test_messy_folder_scans_without_crashing_and_reports_everything(messy):
    before = tree_fingerprint(messy)
    result = scan_folder(messy, progress=False)
    assert result.classes == sorted(["cats", "dogs", "纪念碑 photos", "Éoliennes"])  # NFC, deterministic order
    by_class = result.class_counts()
    assert by_class["cats"] == 17  # every readable oddity, nothing from clutter or the link loop
    assert by_class["dogs"] == 3 + 2  # nested folders and the linked folder belong to the class
    unreadable = {os.path.basename(s.path): s.reason for s in result.unreadable}
    assert set(unreadable) == {
        "zero.jpg",
        "truncated.jpg",
        "random.png",
        "text.jpg",
        "bomb.png",
        "dangling.jpg",
        "zero.png",
    }
    problems = {(s.problem, os.path.basename(s.path)) for s in result.skipped}
    assert ("empty class", "only_broken") in problems
    assert ("empty class", "empty_class") in problems
    assert ("outside class folders", "stray.jpg") in problems
    assert ("not an image", "notes.txt") in problems
    paths = [r.path for r in result.images]
    assert not any("__MACOSX" in p or "/." in p or "Thumbs" in p for p in paths)
    assert len(paths) == len(set(paths))
    assert tree_fingerprint(messy) == before  # nothing in the data folder was touched


def test_presplit_layout_is_detected_with_any_val_name(tmp_path):
    for val_name in ("val", "valid", "Validation"):
        root = tmp_path / val_name
        copy_subset(root / "train", 4, {"fishes": "fish", "tools": "tool"})
        copy_subset(root / val_name, 2, {"fishes": "fish", "tools": "tool"})
        copy_subset(root / "test", 1, {"fishes": "fish", "tools": "tool"})
        result = scan_folder(root, progress=False)
        assert result.presplit
        assert result.classes == ["fish", "tool"]
        assert sorted({r.split for r in result.images}) == ["test", "train", "val"]
        assert sum(r.split == "val" for r in result.images) == 4


def test_two_folders_for_one_split_is_an_error(tmp_path):
    copy_subset(tmp_path / "train", 2, {"fishes": "fish", "tools": "tool"})
    copy_subset(tmp_path / "val", 1, {"fishes": "fish", "tools": "tool"})
    copy_subset(tmp_path / "valid", 1, {"fishes": "fish", "tools": "tool"})
    with pytest.raises(UserError, match="both"):
        scan_folder(tmp_path, progress=False)


def test_missing_or_file_root_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_folder(tmp_path / "nope", progress=False)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        scan_folder(tmp_path / "file.jpg", progress=False)


def test_list_image_files_expands_folders_and_keeps_files(tmp_path):
    copy_subset(tmp_path / "d", 2, {"fishes": "a", "tools": "b"})
    (tmp_path / "d" / "a" / ".hidden.jpg").write_bytes(b"")
    files, _ = list_image_files([tmp_path / "d", SAMPLE / "fishes" / "fish1.webp"])
    assert len(files) == 5
    with pytest.raises(UserError, match="does not exist"):
        list_image_files([tmp_path / "missing.jpg"])


def test_names_that_are_not_utf8_are_reported_not_fatal(tmp_path):
    root = copy_subset(tmp_path / "data", 3, {"fishes": "fish", "tools": "tool"})
    os.makedirs(os.fsencode(root) + b"/caf\xe9")  # a Latin-1 folder name, as archives made on Windows carry
    shutil.copy(SAMPLE / "fishes" / "fish1.webp", os.fsencode(root) + b"/caf\xe9/1.webp")
    shutil.copy(SAMPLE / "fishes" / "fish2.webp", os.fsencode(root) + b"/fish/\xff.webp")
    result = scan_folder(root, progress=False)
    assert result.classes == ["fish", "tool"] and len(result.images) == 6
    bad = [s for s in result.skipped if s.problem == "unreadable name"]
    assert len(bad) == 2 and all("\\x" in s.path for s in bad)
    from foldertune.data.split import assign_splits, write_manifest

    records, _ = assign_splits(result.images, val_fraction=0.3, test_fraction=0, seed=0)
    write_manifest(tmp_path / "m.csv", records)  # every name that got through can be written


@pytest.fixture
def unusable_folders(tmp_path):
    """Three folders no classifier can learn from: photos without class folders, nothing, one class."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for photo in sorted((SAMPLE / "fishes").iterdir())[:15]:
        shutil.copy(photo, flat / photo.name)
    (tmp_path / "empty").mkdir()
    oneclass = copy_subset(tmp_path / "oneclass", 6, {"tools": "tool"})
    return {
        "flat": (flat, "15 images lie directly in '{}', not in class sub-folders: make one sub-folder per class"),
        "empty": (tmp_path / "empty", "no images found in '{}': it needs one sub-folder per class"),
        "oneclass": (oneclass, "only one class ('tool') found in '{}'; a classifier needs at least two class"),
    }


def test_check_and_train_refuse_a_folder_without_classes_in_one_sentence(unusable_folders, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from helpers import run_cli

    calls = [(command, name) for name in unusable_folders for command in ("check", "train")]

    def call(command_and_name):
        command, name = command_and_name
        return run_cli(command, str(unusable_folders[name][0]), "--quiet", cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=3) as pool:  # both commands refuse before torch is imported
        done = dict(zip(calls, pool.map(call, calls), strict=True))
    for (command, name), result in done.items():
        folder, sentence = unusable_folders[name]
        assert result.returncode == 2, (command, name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert sentence.format(folder) in result.stderr, (command, name, result.stderr)
        assert "no errors or warnings" not in result.stdout
    assert not list(tmp_path.glob("*.csv")) and not (tmp_path / "runs").exists()


def test_evaluate_refuses_a_folder_without_classes_in_the_same_sentence(unusable_folders, chinese_run, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from helpers import run_cli

    run, _ = chinese_run
    names = ("flat", "empty")  # one class is fine to evaluate on

    def evaluate(name):
        return run_cli("evaluate", str(run), str(unusable_folders[name][0]), "--out", str(tmp_path / f"eval-{name}"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(names, pool.map(evaluate, names), strict=True))
    for name, result in results.items():
        folder, sentence = unusable_folders[name]
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert sentence.format(folder) in result.stderr


def test_a_folder_whose_images_are_all_unreadable_is_reported_not_refused(tmp_path):
    from foldertune.data.scan import check_layout

    write_bad_images(tmp_path / "data" / "cat")
    scan = scan_folder(tmp_path / "data", progress=False)
    check_layout(scan, min_classes=2)  # the unreadable files are what check and train then name
    assert scan.unreadable
