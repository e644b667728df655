"""Cross-validation (`train --folds K`): folds that keep copies together, fold runs, cv.json, --refit, --resume."""

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import copy_subset, read_csv, run_cli

import foldertune as ft
from foldertune.data.check import find_duplicates
from foldertune.data.near_duplicates import find_near_pairs, fold_groups
from foldertune.data.scan import scan_folder
from foldertune.data.split import assign_folds
from foldertune.errors import UserError

SMALL = ["--mode", "linear", "--epochs", "1", "--img-size", "32", "--batch-size", "8", "--workers", "0", "--quiet"]


def test_folds_partition_the_images_with_copies_together(tmp_path):
    photos = copy_subset(tmp_path / "photos", 7)
    original = sorted((photos / "tools").iterdir())[0]
    shutil.copy(original, photos / "tools" / "copy-of-first.jpg")  # the same bytes under another name
    scan = scan_folder(photos, progress=False)
    exact = find_duplicates(scan.images, scan.info, progress=False)
    near = find_near_pairs([record.path for record in scan.images], progress=False)
    together = fold_groups(scan.images, exact, near)
    fold_of = assign_folds(scan.images, folds=3, seed=0, together=together)

    assert sorted(fold_of) == sorted(record.path for record in scan.images)  # every image, in exactly one fold
    assert set(fold_of.values()) == {1, 2, 3}
    assert fold_of[str(original)] == fold_of[str(photos / "tools" / "copy-of-first.jpg")]
    for label in {record.label for record in scan.images}:  # stratified: each class spread evenly
        counts = np.bincount([fold_of[r.path] for r in scan.images if r.label == label], minlength=4)[1:]
        assert counts.max() - counts.min() <= 1 + (label == "tools"), (label, counts)
    assert assign_folds(scan.images, folds=3, seed=0, together=together) == fold_of  # seeded
    assert assign_folds(scan.images, folds=3, seed=1, together=together) != fold_of


def test_cross_validation_run_then_resume_skips_finished_folds(tmp_path, mobilenet_weights, capsys):
    photos = copy_subset(tmp_path / "photos", 6, {"fishes": "fishes", "tools": "tools", "monuments": "monuments"})
    run = tmp_path / "runs" / "cv"
    done = run_cli("train", str(photos), "--folds", "3", *SMALL, "--project", str(tmp_path / "runs"), "--name", "cv")
    assert done.returncode == 0, done.stderr
    assert "model: none of its own" in done.stdout

    folds = {row["path"]: int(row["fold"]) for row in read_csv(run / "folds.csv")}
    assert len(folds) == 18 and sorted(set(folds.values())) == [1, 2, 3]
    cv = json.loads((run / "cv.json").read_text())
    accuracies, pooled_rows = [], []
    for k in (1, 2, 3):
        fold = run / f"fold-{k}"
        assert (fold / "best.pt").is_file() and (fold / "last.pt").is_file()
        held_out = {row["path"] for row in read_csv(fold / "split.csv") if row["split"] == "val"}
        assert held_out == {path for path, number in folds.items() if number == k}  # its fold is its val split
        accuracies.append(json.loads((fold / "eval" / "val" / "metrics.json").read_text())["overall"]["accuracy"])
        pooled_rows += read_csv(fold / "eval" / "val" / "predictions.csv")
    assert cv["val"]["accuracy"]["folds"] == pytest.approx(accuracies)
    assert cv["val"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert cv["val"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert cv["val"]["accuracy"]["min"] == min(accuracies) and cv["val"]["accuracy"]["max"] == max(accuracies)
    correct = [int(row["correct"]) for row in pooled_rows]
    assert cv["pooled"]["overall"]["images"] == 18
    assert cv["pooled"]["overall"]["accuracy"] == pytest.approx(np.mean(correct))
    assert np.trace(np.array(cv["pooled"]["confusion_matrix"])) == sum(correct)
    oof = read_csv(run / "cv_predictions.csv")
    assert {row["path"]: int(row["fold"]) for row in oof} == folds  # each image once, from the fold that held it out
    logits = np.load(run / "cv_logits.npy")
    assert logits.shape == (18, 3)
    predicted = [cv["pooled"]["classes"][i] for i in logits.argmax(axis=1)]
    assert predicted == [row["predicted"] for row in oof]
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "Cross-validation: 3 folds" in report and "Pooled out-of-fold confusion matrix" in report
    with pytest.raises(UserError, match="cross-validation run without a final model") as refused:
        ft.load(run)  # as predict, export, evaluate and serve do
    assert str(run / "fold-1") in str(refused.value) and "--refit" in str(refused.value)

    # As if stopped while fold 2 started (no last.pt yet), before the summary: --resume trains fold 2 only.
    kept = {k: (run / f"fold-{k}" / "best.pt").stat().st_mtime_ns for k in (1, 3)}
    for name in ("best.pt", "last.pt", "metrics.json", "epochs.csv", "batches.csv"):
        (run / "fold-2" / name).unlink()
    shutil.rmtree(run / "fold-2" / "eval")
    (run / "cv.json").unlink()
    capsys.readouterr()
    ft.resume(run, quiet=True)
    said = capsys.readouterr().out
    assert "fold 1/3: finished before, kept" in said and "fold 3/3: finished before, kept" in said
    assert {k: (run / f"fold-{k}" / "best.pt").stat().st_mtime_ns for k in (1, 3)} == kept  # not retrained
    assert (run / "fold-2.unstarted-1" / "config.json").is_file()  # what the stopped fold wrote, kept aside
    assert (run / "fold-2" / "best.pt").is_file()
    again = json.loads((run / "cv.json").read_text())
    assert again["val"]["accuracy"]["folds"] == pytest.approx(accuracies)  # the same folds, trained alike
    with pytest.raises(UserError, match="already finished"):
        ft.resume(run)


def test_refit_leaves_a_model_for_predict_and_too_many_folds_are_refused(tmp_path, mobilenet_weights):
    photos = copy_subset(tmp_path / "photos", 4, {"fishes": "fishes", "tools": "tools"})
    with pytest.raises(UserError, match=r"^folds= asks for 5 folds, more than the 4 train and val image"):
        ft.train(photos, mode="linear", folds=5, project=str(tmp_path / "runs"), quiet=True)
    with pytest.raises(UserError, match="folds= must be a whole number of 2 or more"):
        ft.train(photos, mode="linear", folds=1, project=str(tmp_path / "runs"), quiet=True)
    with pytest.raises(UserError, match="val= cannot be combined with folds="):
        ft.train(photos, mode="linear", folds=2, val=0.3, project=str(tmp_path / "runs"), quiet=True)
    with pytest.raises(UserError, match="refit=True needs folds="):
        ft.train(photos, mode="linear", refit=True, project=str(tmp_path / "runs"), quiet=True)
    assert not (tmp_path / "runs").exists()
    run = ft.train(photos, mode="linear", folds=2, refit=True, epochs=1, img_size=32, batch_size=8, workers=0,
                   project=str(tmp_path / "runs"), no_report=True, quiet=True)  # fmt: skip
    assert (run / "cv.json").is_file() and (run / "fold-2" / "best.pt").is_file()
    assert {row["split"] for row in read_csv(run / "split.csv")} == {"train"}  # every image in the final model
    rows = read_csv(run / "epochs.csv")
    assert len(rows) == 1 and rows[0]["val_acc"] == "nan"  # no validation split left
    prediction = ft.load(run).predict(str(photos / "tools"))
    assert len(prediction) == 4
    pooled = json.loads((run / "cv.json").read_text(encoding="utf-8"))["temperature"]  # from the out-of-fold logits
    assert torch.load(run / "best.pt", weights_only=True)["temperature"] == pytest.approx(pooled)


def test_more_folds_than_a_class_has_images_says_what_can_be_done(tmp_path):
    photos = copy_subset(tmp_path / "photos", 6, {"fishes": "fishes", "tools": "tools"})
    copy_subset(photos, 2, {"monuments": "monuments"})
    done = run_cli("train", str(photos), "--folds", "3", "--project", str(tmp_path / "runs"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith(
        "--folds asks for 3 folds, more than the 2 train and val image(s) of class 'monuments', so some fold would "
        "validate without it; pass a --folds of 2 or fewer, or add images to 'monuments' (at least 3), or train "
        "without --folds."
    ), done.stderr
    copy_subset(photos, 1, {"renewable": "renewable"})  # a class of one image: no --folds (2 or more) fits it
    done = run_cli("train", str(photos), "--folds", "2", "--project", str(tmp_path / "runs"))
    assert done.returncode == 2 and "--folds of" not in done.stderr, done.stderr
    assert "add images to 'renewable' (at least 2), or train without --folds." in done.stderr
