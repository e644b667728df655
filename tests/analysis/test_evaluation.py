"""`evaluate` on real photos: its numbers agree with each other and with an independent count."""

import json

import numpy as np
import pytest
from conftest import CHINESE_CLASSES
from helpers import copy_subset, read_csv, run_cli

import foldertune as ft
from foldertune.errors import UserError


def test_the_run_folder_holds_a_complete_evaluation(chinese_run):
    run, _ = chinese_run
    folder = run / "eval" / "val"
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    rows = read_csv(folder / "predictions.csv")
    scores = np.load(folder / "scores.npy")
    overall = metrics["overall"]
    assert metrics["classes"] == sorted(CHINESE_CLASSES.values()) and overall["images"] == len(rows) == 6
    assert scores.shape == (6, 3) and np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    assert [metrics["classes"][i] for i in scores.argmax(axis=1)] == [row["predicted"] for row in rows]
    correct = [row["true"] == row["predicted"] for row in rows]
    assert overall["accuracy"] == pytest.approx(np.mean(correct))
    assert [row["correct"] for row in rows] == [str(int(c)) for c in correct]
    recalls = [
        np.mean([c for c, row in zip(correct, rows, strict=True) if row["true"] == name]) for name in metrics["classes"]
    ]
    assert overall["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    per_class = read_csv(folder / "per_class.csv")
    assert sum(int(row["support"]) for row in per_class) == 6
    assert [float(row["recall"]) for row in per_class] == pytest.approx(recalls)
    losses = [-np.log(float(row[f"p{[row[f'top{k}'] for k in (1, 2, 3)].index(row['true']) + 1}"])) for row in rows]
    assert [float(row["loss"]) for row in rows] == pytest.approx(losses, abs=1e-5)
    root = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert root["val"]["accuracy"] == overall["accuracy"] and root["val"]["f1"] == overall["macro_f1"]
    pairs = read_csv(folder / "confused_pairs.csv")
    assert sum(int(p["count"]) for p in pairs) == len(rows) - sum(correct)
    assert len(read_csv(folder / "embedding.csv")) == 6
    assert read_csv(folder / "embedding.csv")[0]["method"] == "t-SNE"  # few points: exact t-SNE, never UMAP
    assert len(read_csv(folder / "cams" / "cams.csv")) == len(list((folder / "cams").glob("*.png"))) > 0
    ended = json.loads((run / "config.json").read_text(encoding="utf-8"))["end_of_run"]  # train --verbose prints it
    assert set(ended) == {"total", "unknown reference", "network", "feature map", "Grad-CAM", "figures", "report"}
    assert ended["total"] >= sum(seconds for part, seconds in ended.items() if part != "total") - 0.01


def test_the_run_reuses_its_best_epochs_validation_and_a_new_evaluation_agrees(chinese_run, tmp_path):
    run, _ = chinese_run
    ran = json.loads((run / "eval" / "val" / "metrics.json").read_text(encoding="utf-8"))
    assert ran["outputs"] == "the validation pass of that epoch"  # no second pass over the validation images
    out = ft.evaluate(run, out=tmp_path / "again", figures=False, progress=False, log=lambda *_: None)
    again = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert again["outputs"] == "this evaluation's network pass"
    assert np.allclose(np.load(out / "scores.npy"), np.load(run / "eval" / "val" / "scores.npy"), atol=1e-4)
    rows, ran_rows = read_csv(out / "predictions.csv"), read_csv(run / "eval" / "val" / "predictions.csv")
    assert [(row["path"], row["predicted"]) for row in rows] == [(row["path"], row["predicted"]) for row in ran_rows]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "loss", "temperature"):
        assert again["overall"][key] == pytest.approx(ran["overall"][key], abs=1e-4), key


def test_evaluate_another_folder_and_its_test_split(chinese_run, tmp_path):
    run, _ = chinese_run
    other = tmp_path / "新照片"
    copy_subset(other / "train", 1, {"fishes": "鱼", "tools": "工具 箱"})
    copy_subset(other / "test", 3, {"fishes": "鱼", "tools": "工具 箱"})
    out = ft.evaluate(run, other, split="test", figures=False, progress=False)
    assert out == run / "eval" / "新照片-test"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["overall"]["images"] == 6 and not (out / "confusion_matrix.png").exists()
    copy_subset(tmp_path / "unknown", 2, {"fishes": "鲨鱼", "tools": "工具 箱"})
    with pytest.raises(UserError, match="classes the model does not know"):
        ft.evaluate(run / "best.pt", tmp_path / "unknown", figures=False, progress=False)


def test_evaluate_cli_refuses_a_split_the_run_does_not_have(chinese_run):
    done = run_cli("evaluate", str(chinese_run[0]), "--split", "test", "--no-figures")
    assert done.returncode == 2 and "no test images" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_new_evaluation_replaces_every_file_of_the_old_one_and_nothing_else(chinese_run, tmp_path):
    import shutil

    run = shutil.copytree(chinese_run[0], tmp_path / "run")
    folder = run / "eval" / "val"
    (folder / "top_losses.pdf").write_bytes(b"%PDF old")  # a figure an earlier `plot --format pdf` left
    (folder / "notes.txt").write_text("mine")  # not ours: must stay
    assert (folder / "cams").is_dir() and (folder / "embedding.csv").exists()
    ft.evaluate(run, figures=False, progress=False, log=lambda *_: None)
    left = {p.name for p in folder.iterdir()}
    assert left == {"metrics.json", "per_class.csv", "predictions.csv", "confused_pairs.csv", "scores.npy", "notes.txt"}


def test_unreadable_and_single_class_evaluations_do_not_break_anything(chinese_run, tmp_path):
    import shutil

    run = shutil.copytree(chinese_run[0], tmp_path / "run")
    with open(run / "split.csv", "a", encoding="utf-8") as handle:
        handle.write(f"{tmp_path / 'gone.jpg'},鱼,val\n")  # listed, but deleted since training
    out = ft.evaluate(run, progress=False, log=lambda *_: None)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["unreadable"]) == [str(tmp_path / "gone.jpg")] and metrics["overall"]["images"] == 6
    errors = [row for row in read_csv(out / "predictions.csv") if row["error"]]
    assert len(errors) == 1 and errors[0]["true"] == "鱼" and errors[0]["predicted"] == ""

    one = copy_subset(tmp_path / "only_fish", 3, {"fishes": "鱼"})
    out = ft.evaluate(run, one, progress=False, log=lambda *_: None)
    assert out.name == "only_fish-all"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["overall"]["macro_average_precision"] is None  # meaningless with one class: not 1.0
    assert all(row["average_precision"] is None for row in metrics["per_class"])
    assert (out / "per_class.png").exists() and not (out / "pr_curves.png").exists()
