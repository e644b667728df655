"""check, split, train and predict over a folder holding everything users' folders hold, as real CLI processes.

Each must finish (no crash, no hang), name every bad file exactly once, use every good file, and leave the data
folder byte-for-byte as it was.
"""

import json
import os

import pytest
from helpers import read_csv, run_cli, tree_fingerprint, write_hostile_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "数据 data"
    root.mkdir()
    good, bad = write_hostile_corpus(root)
    return root, good, bad, tree_fingerprint(root)


def relative(paths, root):
    return {os.path.relpath(path, root) for path in paths}


def assert_each_bad_file_named_once(text, bad):
    for rel, word in bad.items():
        assert text.count(rel) == 1, (rel, text)
        line = next(line for line in text.splitlines() if rel in line)
        assert word in line, (rel, line)


def test_check_names_every_bad_file_once_and_lists_every_good_one(corpus, tmp_path, mobilenet_weights):
    root, good, bad, before = corpus
    done = run_cli("check", str(root), "--deep", "--out", str(tmp_path / "check.csv"), timeout=120)
    assert done.returncode == 1, done.stderr  # unreadable files: exit status 1 for scripts
    assert "Traceback" not in done.stderr
    assert_each_bad_file_named_once(done.stdout, bad)
    rows = read_csv(tmp_path / "check.csv")
    assert relative([r["path"] for r in rows if r["status"] == "error"], root) == set(bad)
    assert relative([r["path"] for r in rows if r["status"] in ("ok", "note", "warning")], root) == good
    by_rel = {os.path.relpath(r["path"], root): r for r in rows}
    assert {by_rel[f"monuments/exif{n}.jpg"]["findings"] for n in range(2, 9)} == {"exif-rotated;near-duplicate"}
    assert by_rel["monuments/exif1.jpg"]["findings"] == "near-duplicate"  # one photo saved in eight orientations
    assert "link loop" in by_rel["monuments/loop"]["findings"]
    assert "empty class" in by_rel["empty class"]["findings"]
    assert not any("__MACOSX" in r["path"] or "/." in r["path"] or "Thumbs.db" in r["path"] for r in rows)
    assert tree_fingerprint(root) == before


def test_split_names_every_bad_file_once_and_splits_every_good_one(corpus, tmp_path):
    root, good, bad, before = corpus
    manifest = tmp_path / "split.csv"
    done = run_cli("split", str(root), "--val", "0.3", "--manifest", str(manifest), "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr
    assert_each_bad_file_named_once(done.stdout, bad)
    assert relative([row["path"] for row in read_csv(manifest)], root) == good
    assert tree_fingerprint(root) == before


def test_train_and_predict_use_every_good_file_and_name_every_bad_one_once(corpus, tmp_path, mobilenet_weights):
    root, good, bad, before = corpus
    done = run_cli(
        "train", str(root), "--epochs", "1", "--img-size", "64", "--batch-size", "8", "--workers", "1",
        "--precision", "fp32", "--quiet", "--no-report", "--project", str(tmp_path), "--name", "run", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_each_bad_file_named_once(done.stdout + done.stderr, bad)
    run = tmp_path / "run"
    assert relative([row["path"] for row in read_csv(run / "split.csv")], root) == good
    assert relative(
        [row["path"] for row in read_csv(run / "data_report.csv") if row["problem"] == "unreadable"], root
    ) == set(bad)
    assert json.loads((run / "classes.json").read_text(encoding="utf-8")) == {"0": "monuments", "1": "鱼 fish"}

    predicted = run_cli("predict", str(run), str(root), "--out", str(tmp_path / "preds.csv"), timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    assert_each_bad_file_named_once(predicted.stdout, bad)
    rows = read_csv(tmp_path / "preds.csv")
    assert relative([r["path"] for r in rows if not r["error"]], root) == good
    assert relative([r["path"] for r in rows if r["error"]], root) == set(bad)
    assert tree_fingerprint(root) == before
