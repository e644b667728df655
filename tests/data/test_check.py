"""The dataset doctor on real files: every finding on the file that has it, duplicates, leaks, quarantine and undo."""

import os
import shutil
import struct
import zlib
from collections import Counter

import numpy as np
import pytest
from helpers import (
    SAMPLE,
    copy_subset,
    in_python_words,
    read_csv,
    run_cli,
    save_with_orientation,
    tree_fingerprint,
    write_bad_images,
)
from PIL import Image

from foldertune.data.check import check_source, find_duplicates
from foldertune.data.images import ImageReadError, inspect_image
from foldertune.data.scan import scan_folder
from foldertune.data.split import assign_splits


def findings_by_name(report):
    """Kinds per file name; near-duplicate notes aside (the odd files below are all made from one photo)."""
    kinds = {
        os.path.basename(path): {f.kind for f in found} - {"near-duplicate"} for path, found in report.findings.items()
    }
    return {name: found for name, found in kinds.items() if found}


@pytest.fixture
def odd_folder(tmp_path):
    """Two classes of real photos plus one file per finding, named after it."""
    root = copy_subset(tmp_path / "data", 5, {"fishes": "fish", "tools": "tool"})
    photo = Image.open(SAMPLE / "monuments" / "monument1.webp").convert("RGB")
    photo = photo.resize((photo.width // 4, photo.height // 4))
    odd = root / "fish"
    save_with_orientation(photo, odd / "rotated.jpg", 6)
    photo.convert("L").save(odd / "grey.png")
    photo.convert("L").convert("RGB").save(odd / "grey_as_colour.png")
    photo.convert("CMYK").save(odd / "cmyk.jpg")
    Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(odd / "sixteen.png")
    photo.convert("RGBA").save(odd / "alpha.png")
    photo.save(odd / "animated.gif", save_all=True, append_images=[photo.rotate(90)])
    photo.resize((24, 20)).save(odd / "tiny.png")
    photo.resize((400, 60)).save(odd / "elongated.png")
    shutil.copy(root / "fish" / "fish1.webp", root / "fish" / "copy of fish1.webp")  # a duplicate in the class
    shutil.copy(root / "fish" / "fish10.webp", root / "tool" / "fish10 filed as a tool.webp")  # a label conflict
    write_bad_images(root / "tool")
    return root


def test_every_finding_lands_on_the_file_that_has_it(odd_folder):
    report = check_source(odd_folder, decode="full", progress=False)
    found = findings_by_name(report)
    assert found["rotated.jpg"] == {"exif-rotated"}
    assert found["grey.png"] == {"grey"}
    assert found["grey_as_colour.png"] == {"grey"}  # only a full decode can see this one
    assert found["cmyk.jpg"] == {"cmyk"}
    assert found["sixteen.png"] == {"16-bit", "grey"}
    assert found["alpha.png"] == {"alpha"}
    assert found["animated.gif"] == {"animated"}
    assert found["tiny.png"] == {"tiny"}
    assert found["elongated.png"] == {"elongated"}
    assert found["fish1.webp"] == found["copy of fish1.webp"] == {"duplicate"}
    assert found["fish10.webp"] == found["fish10 filed as a tool.webp"] == {"label conflict"}
    near = {
        os.path.basename(p) for p, found in report.findings.items() if any(f.kind == "near-duplicate" for f in found)
    }
    assert {"rotated.jpg", "grey.png", "cmyk.jpg", "elongated.png"} <= near  # one photo, saved in many ways
    plain = {name for name in os.listdir(odd_folder / "tool") if name.startswith("tool")}
    assert not plain & set(found), "photos without anything odd have no findings"
    unreadable = {os.path.basename(s.path): s.reason for s in report.skipped if s.problem == "unreadable"}
    for name, word in write_bad_images(odd_folder.parent / "reference").items():
        assert word in unreadable[name]
    assert report.failed


def test_header_scan_finds_the_same_except_what_needs_pixels(odd_folder):
    before = tree_fingerprint(odd_folder)
    header = check_source(odd_folder, decode="header", progress=False)
    deep = check_source(odd_folder, decode="full", progress=False)
    assert findings_by_name(header)["rotated.jpg"] == {"exif-rotated"}
    assert "grey_as_colour.png" not in findings_by_name(header)
    header_bad = {os.path.basename(s.path) for s in header.unreadable_files()}
    deep_bad = {os.path.basename(s.path) for s in deep.unreadable_files()}
    assert deep_bad - header_bad == {"truncated.jpg"}  # cut short: only decoding finds it
    assert "without --fast" in header.summary()
    assert tree_fingerprint(odd_folder) == before


def test_duplicates_are_found_by_content_not_by_name_or_size(tmp_path):
    root = copy_subset(tmp_path / "data", 4, {"fishes": "a", "tools": "b"})
    first = root / "a" / sorted(os.listdir(root / "a"))[0]
    padded = bytearray(first.read_bytes())
    padded[-3] ^= 0xFF  # same size, different bytes: not a duplicate
    (root / "a" / "same size.webp").write_bytes(padded)
    shutil.copy(first, root / "b" / "renamed.webp")
    scan = scan_folder(root, decode="header", progress=False)
    groups = find_duplicates(scan.images, scan.info, progress=False)
    assert [sorted(os.path.basename(r.path) for r in group) for group in groups] == [[first.name, "renamed.webp"]]


def test_a_leak_between_given_splits_is_a_warning_and_exit_status_1(tmp_path):
    root = copy_subset(tmp_path / "data" / "train", 6, {"fishes": "fish", "tools": "tool"}).parent
    for label in ("fish", "tool"):
        (root / "val" / label).mkdir(parents=True)
        for name in sorted(os.listdir(root / "train" / label))[3:]:
            os.replace(root / "train" / label / name, root / "val" / label / name)
    shutil.copy(SAMPLE / "fishes" / "fish20.webp", root / "val" / "fish" / "fish20.webp")
    shutil.copy(SAMPLE / "fishes" / "fish20.webp", root / "train" / "fish" / "fish20 again.webp")
    done = run_cli("check", str(root), "--out", str(tmp_path / "check.csv"), "--quiet")
    assert done.returncode == 1, done.stderr
    assert "leak: 2 file(s)" in done.stdout
    rows = {os.path.basename(row["path"]): row for row in read_csv(tmp_path / "check.csv")}
    assert rows["fish20.webp"]["findings"] == "leak" and rows["fish20.webp"]["status"] == "warning"
    assert "also in train" in rows["fish20.webp"]["detail"]
    assert rows["fish20.webp"]["duplicate_group"] == rows["fish20 again.webp"]["duplicate_group"] != ""


def test_splitting_keeps_copies_of_one_image_in_one_split(tmp_path):
    root = copy_subset(tmp_path / "data", 20, {"fishes": "fish"})
    for name in sorted(os.listdir(root / "fish"))[:10]:  # ten photos, each twice
        shutil.copy(root / "fish" / name, root / "fish" / f"copy {name}")
    scan = scan_folder(root, progress=False)
    groups = find_duplicates(scan.images, scan.info, progress=False)
    assert len(groups) == 10

    def straddling(records):
        split_of = {r.path: r.split for r in records}
        return sum(len({split_of[r.path] for r in group}) > 1 for group in groups)

    apart = [assign_splits(scan.images, val_fraction=0.3, test_fraction=0, seed=seed)[0] for seed in range(5)]
    together = [
        assign_splits(scan.images, val_fraction=0.3, test_fraction=0, seed=seed, together=groups)[0]
        for seed in range(5)
    ]
    assert sum(straddling(records) for records in apart) > 0  # left alone, copies land on both sides
    assert all(straddling(records) == 0 for records in together)
    assert all({r.path for r in a} == {r.path for r in t} for a, t in zip(apart, together, strict=True))


def test_quarantine_moves_only_unreadable_files_and_restore_undoes_it(tmp_path):
    root = copy_subset(tmp_path / "data", 4, {"fishes": "fish", "tools": "tool"})
    bad = write_bad_images(root / "tool" / "nested")
    before = tree_fingerprint(root)
    quarantine = tmp_path / "quarantine"
    done = run_cli("check", str(root), "--quarantine", str(quarantine), "--out", str(tmp_path / "c.csv"), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr  # nothing unreadable is left in the data
    after = tree_fingerprint(root)
    moved = {rel for rel in before if rel not in after}
    assert moved == {f"tool/nested/{name}" for name in bad}
    assert {rel: before[rel] for rel in after} == after, "everything else is untouched"
    for name in bad:
        target = quarantine / "tool" / "nested" / name
        assert os.path.lexists(target)
        assert before[f"tool/nested/{name}"] == tree_fingerprint(quarantine)[f"tool/nested/{name}"]
    manifest = read_csv(quarantine / "quarantine.csv")
    assert {os.path.basename(row["original"]) for row in manifest} == set(bad)
    assert all(row["reason"] for row in manifest)
    assert "undo: foldertune check --restore" in done.stdout

    restored = run_cli("check", "--restore", str(quarantine))
    assert restored.returncode == 0, restored.stderr
    assert tree_fingerprint(root) == before
    assert not quarantine.exists()


def test_restore_never_overwrites_a_file_that_came_back(tmp_path):
    root = copy_subset(tmp_path / "data", 3, {"fishes": "fish", "tools": "tool"})
    (root / "tool" / "zero.jpg").write_bytes(b"")
    quarantine = tmp_path / "q"
    assert (
        run_cli("check", str(root), "--quarantine", str(quarantine), "--out", str(tmp_path / "c.csv")).returncode == 0
    )
    (root / "tool" / "zero.jpg").write_bytes(b"new content the user made")
    done = run_cli("check", "--restore", str(quarantine))
    assert done.returncode == 1
    assert "kept" in done.stdout and "is back in the data folder" in done.stdout
    assert (root / "tool" / "zero.jpg").read_bytes() == b"new content the user made"
    assert (quarantine / "tool" / "zero.jpg").read_bytes() == b""
    assert len(read_csv(quarantine / "quarantine.csv")) == 1  # still listed, so it can be sorted out later


def test_inspect_reports_sixteen_bit_colour_that_pil_reads_as_eight_bit(tmp_path):
    pixels = np.full((4, 5, 3), 40000, dtype=">u2")
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)  # filter type 0, big-endian samples

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    path = tmp_path / "rgb16.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    assert Image.open(path).mode == "RGB"
    for decode in ("header", "draft", "full"):
        assert inspect_image(path, decode=decode).bits == 16


def test_every_decode_level_reports_the_stored_size(odd_folder):
    big = odd_folder / "fish" / "big.jpg"
    Image.open(SAMPLE / "tools" / "cuttingTool.webp").convert("RGB").resize((1600, 1200)).save(big)
    for path in sorted(odd_folder.rglob("*.*")):
        try:
            sizes = {(i.width, i.height, i.orientation) for i in (inspect_image(path, decode=d) for d in
                     ("header", "draft", "full"))}  # fmt: skip
        except ImageReadError:
            continue  # the broken files
        assert len(sizes) == 1, (path.name, sizes)
    assert (inspect_image(big, decode="draft").width, inspect_image(big, decode="draft").height) == (1600, 1200)


def test_a_run_folder_is_checked_on_the_split_it_trained_on(tmp_path):
    from foldertune.data.scan import ImageRecord
    from foldertune.data.split import write_manifest

    root = copy_subset(tmp_path / "data", 4, {"fishes": "fish", "tools": "tool"})
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    photos = sorted(root.rglob("*.webp"))
    records = [ImageRecord(str(p), p.parent.name, "val" if i % 4 == 0 else "train") for i, p in enumerate(photos)]
    shutil.copy(photos[0], root / "fish" / "again.webp")  # photos[0] is in val; its copy goes to train
    records.append(ImageRecord(str(root / "fish" / "again.webp"), "fish", "train"))
    write_manifest(run / "split.csv", records)
    done = run_cli("check", str(run), "--quiet", cwd=tmp_path)
    assert done.returncode == 1
    assert not (run / "data_check.csv").exists(), "the run's own record (what --resume compares) is left alone"
    rows = {os.path.basename(row["path"]): row for row in read_csv(tmp_path / "check.csv")}
    assert rows["again.webp"]["findings"] == rows[photos[0].name]["findings"] == "leak"
    assert len(rows) == len(records)


def test_a_class_of_copies_still_gets_its_share_of_validation_images(tmp_path):
    root = copy_subset(tmp_path / "data", 12, {"fishes": "fish", "tools": "tool"})
    fish = sorted((root / "fish").iterdir())
    for photo in fish[6:]:
        photo.unlink()
    for photo in fish[:6]:  # six photos, each twice: every fish is in a copy group
        shutil.copy(photo, photo.with_name(f"copy {photo.name}"))
    scan = scan_folder(root, progress=False)
    groups = find_duplicates(scan.images, scan.info, progress=False)
    assert len(groups) == 6
    for seed in range(10):
        split, _ = assign_splits(scan.images, val_fraction=0.2, test_fraction=0.2, seed=seed, together=groups)
        split_of = {record.path: record.split for record in split}
        assert all(len({split_of[r.path] for r in group}) == 1 for group in groups), seed
        for label in ("fish", "tool"):
            counts = Counter(record.split for record in split if record.label == label)
            assert (counts["val"], counts["test"], counts["train"]) == (2, 2, 8), (seed, label, counts)


def test_copies_keep_a_class_its_training_images(tmp_path):
    from foldertune.data.scan import ImageRecord

    root = copy_subset(tmp_path / "data", 1, {"fishes": "cat"})
    first = next((root / "cat").iterdir())
    shutil.copy(first, root / "cat" / "again.webp")
    records = [ImageRecord(str(p), "cat", None) for p in sorted((root / "cat").iterdir())]
    scan = scan_folder(root, progress=False)
    groups = find_duplicates(scan.images, scan.info, progress=False)
    for seed in range(8):
        split, _ = assign_splits(records, val_fraction=0.5, test_fraction=0, seed=seed, together=groups)
        assert {r.split for r in split} == {"train"}, seed


def test_a_plain_check_names_the_truncated_jpeg_that_training_leaves_out(tmp_path):
    root = copy_subset(tmp_path / "data", 4, {"fishes": "fish", "tools": "tool"})
    photo = Image.open(SAMPLE / "monuments" / "monument1.webp").convert("RGB")
    photo.save(tmp_path / "whole.jpg", quality=90)
    whole = (tmp_path / "whole.jpg").read_bytes()
    (root / "fish" / "cut short.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # a copy interrupted mid-transfer
    left_out_by_training = {os.path.basename(s.path) for s in scan_folder(root, progress=False).unreadable}
    assert left_out_by_training == {"cut short.jpg"}

    plain = run_cli("check", str(root), "--out", str(tmp_path / "plain.csv"), "--quiet")
    assert plain.returncode == 1, plain.stderr
    assert "cut short.jpg: truncated image data" in plain.stdout
    assert "headers only" not in plain.stdout
    rows = {os.path.basename(row["path"]): row for row in read_csv(tmp_path / "plain.csv")}
    assert rows["cut short.jpg"]["status"] == "error"

    fast = run_cli("check", str(root), "--fast", "--out", str(tmp_path / "fast.csv"), "--quiet")
    assert fast.returncode == 0 and "cut short.jpg" not in fast.stdout
    assert "headers only (--fast)" in fast.stdout


def test_check_refuses_to_overwrite_its_csv_unless_forced(tmp_path):
    import foldertune
    from foldertune.errors import UserError

    root = copy_subset(tmp_path / "data", 3, {"fishes": "fish", "tools": "tool"})
    first = run_cli("check", str(root), "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = (tmp_path / "check.csv").read_bytes()
    again = run_cli("check", str(root), "--quiet", cwd=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "--out 'check.csv' already exists; pass another --out, or --force to replace it." in again.stderr
    assert (tmp_path / "check.csv").read_bytes() == written
    forced = run_cli("check", str(root), "--quiet", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr

    both = run_cli("check", str(root), "--fast", "--deep", "--out", str(tmp_path / "x.csv"))
    with pytest.raises(UserError) as refused:
        foldertune.check(root, fast=True, deep=True)
    said = both.stderr.removeprefix("foldertune check: error: ").removesuffix("\n")
    assert both.returncode == 2 and str(refused.value) == in_python_words(said, "check")  # the API names keywords


def test_check_names_a_class_with_validation_images_but_no_training_images(tmp_path):
    root = tmp_path / "presplit"
    copy_subset(root / "train", 4, {"fishes": "fish", "tools": "tool"})
    for name in ("fish", "tool"):  # one photo of each class moves to val/: no leak
        (root / "val" / name).mkdir(parents=True)
        first = sorted((root / "train" / name).iterdir())[0]
        first.rename(root / "val" / name / first.name)
    copy_subset(root / "val", 1, {"monuments": "monument"})  # a class that only the val/ folder has
    done = run_cli("check", str(root), "--out", str(tmp_path / "c.csv"), "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "class 'monument' has val images but no training images" in done.stdout, done.stdout
    assert "'fish' has val" not in done.stdout and "'tool' has val" not in done.stdout
