"""The label check on real photos: photos filed in the wrong class folder are found, with the class they belong to;
a black frame is an outlier; the fix manifest trains; the CLI and the API agree and refuse the same options."""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import SAMPLE, copy_subset, in_python_words, read_csv, run_cli, tree_fingerprint
from PIL import Image

import foldertune
from foldertune.data.check import CHECK_COLUMNS
from foldertune.errors import UserError
from foldertune.runs.cache import cache_root

MISFILED = {
    "fish12.webp": ("fishes", "tools"),
    "dam2.webp": ("renewable", "fishes"),
    "eiffelTower.webp": ("monuments", "renewable"),
}  # fmt: skip  (name: (true class, folder it is filed in))
SIZE = "96"  # pixels: small enough to be quick, large enough for the pretrained features to tell the classes apart


@pytest.fixture(scope="module")
def misfiled(tmp_path_factory, mobilenet_weights):
    """12 real photos per class, three of them filed in the wrong class folder, and a black frame among the tools;
    checked once through the real CLI with a fix manifest: (data folder, check.csv rows, the CLI's result, folder)."""
    base = tmp_path_factory.mktemp("label_check")
    data = copy_subset(base / "data", 12)
    for name, (true, filed) in MISFILED.items():
        if not (data / true / name).exists():
            shutil.copy(SAMPLE / true / name, data / true / name)
        shutil.move(data / true / name, data / filed / name)
    Image.new("RGB", (320, 240), (3, 3, 3)).save(data / "tools" / "black frame.png")
    before = tree_fingerprint(data)
    done = run_cli("check", str(data), "--labels", "--img-size", SIZE, "--fix-manifest", str(base / "fixed.csv"),
                   "--out", str(base / "check.csv"), "--quiet")  # fmt: skip
    assert tree_fingerprint(data) == before, "the data folder is never written"
    return data, {os.path.basename(row["path"]): row for row in read_csv(base / "check.csv")}, done, base


def test_photos_in_the_wrong_folder_are_flagged_with_their_true_class(misfiled):
    _, rows, done, _ = misfiled
    assert done.returncode == 1, done.stdout + done.stderr  # suspected label errors: exit status 1 for scripts
    assert "Traceback" not in done.stderr
    for name, (true, filed) in MISFILED.items():
        row = rows[name]
        assert "label-issue" in row["findings"].split(";"), row
        assert (row["class"], row["suggested_class"]) == (filed, true)
        assert float(row["label_score"]) >= 0.8
        assert f"filed as '{filed}', looks like '{true}'" in row["detail"]
        assert f"{filed}/{name}: filed as '{filed}', looks like '{true}'" in done.stdout
    listed = done.stdout.split("label-issue: ")[1].splitlines()[1:6]  # the five likeliest (lowest self-confidence)
    assert sum(any(name in line for line in listed) for name in MISFILED) >= 2, listed
    assert "label check: mobilenet_v2 features of 61 image(s)" in done.stdout


def test_a_black_frame_is_an_outlier_and_the_csv_keeps_its_columns(misfiled):
    _, rows, _, base = misfiled
    assert "outlier" in rows["black frame.png"]["findings"]
    highest = sorted(rows, key=lambda name: -float(rows[name]["outlier_score"]))[:2]
    assert "black frame.png" in highest  # beside the sample's own photo of a black slate
    with open(base / "check.csv", encoding="utf-8") as handle:
        assert handle.readline().strip() == ",".join(CHECK_COLUMNS)
    assert CHECK_COLUMNS[:13] == [
        "path",
        "class",
        "split",
        "status",
        "findings",
        "detail",
        "format",
        "mode",
        "width",
        "height",
        "bytes",
        "mtime_ns",
        "duplicate_group",
    ]  # fmt: skip  (scripts read them)
    assert all(row["suggested_class"] and row["label_score"] and row["outlier_score"] for row in rows.values())


def test_the_fix_manifest_leaves_the_suspects_out_and_trains(misfiled):
    _, rows, done, base = misfiled
    fixed = {os.path.basename(row["path"]): row for row in read_csv(base / "fixed.csv")}
    suspects = {name for name, row in rows.items() if "label-issue" in row["findings"]}
    assert set(MISFILED) <= suspects and not suspects & set(fixed)
    assert set(fixed) == set(rows) - suspects
    assert {row["split"] for row in fixed.values()} == {"train", "val"}
    assert f"train on it: foldertune train --manifest {base / 'fixed.csv'}" in done.stdout
    trained = run_cli("train", "--manifest", str(base / "fixed.csv"), "--mode", "linear", "--epochs", "1",
                      "--img-size", SIZE, "--workers", "0", "--precision", "fp32", "--quiet", "--no-report",
                      "--project", str(base / "runs"), "--name", "fixed")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    used = {os.path.basename(row["path"]) for row in read_csv(base / "runs" / "fixed" / "split.csv")}
    assert used == set(fixed)


def test_the_api_finds_the_same_and_reads_the_features_and_the_heads_from_the_cache(misfiled, tmp_path):
    data, rows, _, _ = misfiled
    entries = sorted((cache_root() / "label-check").rglob("*.npy"))
    assert entries, "the CLI's check stored its out-of-fold probabilities"
    report = foldertune.check(data, labels=True, img_size=int(SIZE), progress=False,
                              fix_manifest=tmp_path / "relabelled.csv", relabel=True)  # fmt: skip
    assert "(0 computed, 61 from the cache)" in report.summary()
    assert ", from the cache)" in report.summary()  # same features, labels and folds: no head trained again
    assert sorted((cache_root() / "label-check").rglob("*.npy")) == entries
    flagged = {
        os.path.basename(p) for p, found in report.findings.items() if any(f.kind == "label-issue" for f in found)
    }
    assert flagged == {name for name, row in rows.items() if "label-issue" in row["findings"]}
    for name, (true, _) in MISFILED.items():
        assert report.scores[str(data / MISFILED[name][1] / name)]["suggested_class"] == true
    relabelled = {os.path.basename(row["path"]): row["class"] for row in read_csv(tmp_path / "relabelled.csv")}
    assert all(relabelled[name] == true for name, (true, _) in MISFILED.items())


def test_the_fix_manifest_never_replaces_the_manifest_being_checked(tmp_path):
    data = copy_subset(tmp_path / "data", 3, {"fishes": "fish", "tools": "tool"})
    manifest = tmp_path / "split.csv"
    assert run_cli("split", str(data), "--manifest", str(manifest)).returncode == 0
    before = manifest.read_bytes()
    done = run_cli("check", str(manifest), "--labels", "--fix-manifest", str(manifest), "--force", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().endswith(
        f"--fix-manifest '{manifest}' is the input '{manifest}' itself; write to another file: foldertune never "
        "replaces what it reads."
    ), done.stderr
    assert manifest.read_bytes() == before
    with pytest.raises(UserError, match="is the input"):
        foldertune.check(manifest, labels=True, fix_manifest=manifest, force=True, progress=False)


def test_the_cli_and_the_api_refuse_the_same_label_options_with_the_same_sentence(tmp_path):
    data = copy_subset(tmp_path / "data", 2, {"fishes": "fish", "tools": "tool"})
    (tmp_path / "taken.csv").write_text("path,class,split\n")
    cases = {
        ("--relabel",): dict(relabel=True),
        ("--model", "resnet18"): dict(model="resnet18"),
        ("--fix-manifest", "x.csv"): dict(fix_manifest="x.csv"),
        ("--labels", "--folds", "1"): dict(labels=True, folds=1),
        ("--labels", "--min-label-score", "2"): dict(labels=True, min_label_score=2.0),
        ("--labels", "--model", "mobilenet"): dict(labels=True, model="mobilenet"),
        ("--labels", "--img-size", "8"): dict(labels=True, img_size=8),
        ("--labels", "--fix-manifest", str(data / "in.csv")): dict(labels=True, fix_manifest=data / "in.csv"),
        ("--labels", "--fix-manifest", str(tmp_path / "taken.csv")): dict(labels=True,
                                                                           fix_manifest=tmp_path / "taken.csv"),
    }  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    with ThreadPoolExecutor(max_workers=3) as pool:  # each refuses before torch is imported
        done = dict(
            zip(cases, pool.map(lambda flags: run_cli("check", str(data), *flags, cwd=out), cases), strict=True)
        )
    for flags, options in cases.items():
        with pytest.raises(UserError) as refused:
            foldertune.check(data, progress=False, **options)
        assert done[flags].returncode == 2, (flags, done[flags].stdout, done[flags].stderr)
        said = done[flags].stderr.removeprefix("foldertune check: error: ").removesuffix("\n")
        assert str(refused.value) == in_python_words(said, "check"), flags  # the API names keywords
    assert not list(out.iterdir()) and (tmp_path / "taken.csv").read_text() == "path,class,split\n"


def test_the_label_check_says_how_many_folds_it_used_when_the_classes_allow_fewer(tmp_path, mobilenet_weights):
    data = copy_subset(tmp_path / "data", 4, {"fishes": "fish", "tools": "tool"})
    report = foldertune.check(data, labels=True, folds=50, img_size=64, cache_dir=tmp_path / "cache", progress=False)
    [about] = [line for line in report.about if line.startswith("label check:")]
    assert "4-fold (not the 50 asked for: the smallest class, or the copies, allow no more) linear heads" in about
    report = foldertune.check(data, labels=True, folds=3, img_size=64, cache_dir=tmp_path / "cache", progress=False)
    assert "3-fold linear heads" in report.about[-1] and "asked for" not in report.about[-1]
