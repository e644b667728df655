"""Distributed data parallel as users start it: `torchrun --nproc_per_node=2 -m foldertune train`, on CPUs (gloo).

Both processes must run, write one run folder, and report validation metrics equal to a single-process evaluation
of the checkpoint they saved; resuming must work under torchrun; linear mode with the feature cache too, and
cross-validation (`--folds`, `--refit`).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import copy_subset, read_csv, run_cli

import foldertune as ft
from foldertune.data.dataset import EpochBatchSampler
from foldertune.training.distributed import shard, unshard

TINY = ["--img-size", "64", "--batch-size", "4", "--workers", "0", "--precision", "fp32", "--no-report"]


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "foldertune", "train", *args],
        cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=600,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip


def assert_metrics_match_a_single_process_evaluation(run, tmp_path):
    """The val metrics logged for the best epoch equal what one process computes from best.pt."""
    best = torch.load(run / "best.pt", weights_only=True)
    logged = next(row for row in read_csv(run / "epochs.csv") if int(row["epoch"]) == best["epoch"])
    single = run_cli("evaluate", str(run), "--quiet", "--no-figures", cwd=tmp_path, timeout=300)
    assert single.returncode == 0, single.stderr
    metrics = json.loads((run / "eval" / "val" / "metrics.json").read_text())
    overall = metrics["overall"]
    assert overall["images"] == sum(row["split"] == "val" for row in read_csv(run / "split.csv"))
    assert float(logged["val_acc"]) == pytest.approx(overall["accuracy"], abs=1e-6)
    assert float(logged["val_f1"]) == pytest.approx(overall["macro_f1"], abs=1e-5)
    # training logs the loss before the calibration temperature, which the evaluation's loss includes
    assert float(logged["val_loss"]) == pytest.approx(metrics["calibration"]["nll_before"], rel=1e-4)


def test_two_processes_train_one_run_and_resume_under_torchrun(small_dataset, tmp_path, mobilenet_weights):
    done = torchrun(str(small_dataset), "--epochs", "1", *TINY, "--project", str(tmp_path / "runs"), "--name", "ddp",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"], "one run folder"
    run = tmp_path / "runs" / "ddp"
    config = json.loads((run / "config.json").read_text())
    processes = config["distributed"]["processes"]
    assert config["distributed"]["world_size"] == 2 and config["distributed"]["backend"] == "gloo"
    assert sorted(p["rank"] for p in processes) == [0, 1] and len({p["pid"] for p in processes}) == 2
    assert done.stdout.count("epoch 1/1") == 1, "only rank 0 speaks"
    assert "2 processes (gloo), global batch 2 x 4 = 8" in done.stdout
    steps = len(read_csv(run / "batches.csv"))
    train_images = sum(row["split"] == "train" for row in read_csv(run / "split.csv"))
    assert steps == -(-train_images // 2) // 4, "each process takes half of every epoch"
    assert_metrics_match_a_single_process_evaluation(run, tmp_path)

    resumed = torchrun("--resume", str(run), "--epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run} after epoch 1 of 2" in resumed.stdout
    assert [int(row["epoch"]) for row in read_csv(run / "epochs.csv")] == [1, 2]
    assert json.loads((run / "config.json").read_text())["resumed"][0]["processes"] == 2
    assert_metrics_match_a_single_process_evaluation(run, tmp_path)


def test_linear_mode_with_the_feature_cache_under_torchrun(small_dataset, tmp_path, mobilenet_weights):
    args = [
        str(small_dataset),
        "--mode",
        "linear",
        "--epochs",
        "2",
        *TINY,
        "--project",
        str(tmp_path),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]  # fmt: skip  (empty: other tests filled the session's cache)
    first = torchrun(*args, "--name", "linear", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    images = len(read_csv(tmp_path / "linear" / "split.csv"))
    assert (
        f"features: {images} image view(s), {images} computed by the frozen backbone, 0 from the cache" in first.stdout
    )
    assert_metrics_match_a_single_process_evaluation(tmp_path / "linear", tmp_path)
    again = torchrun(*args, "--name", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"0 computed by the frozen backbone, {images} from the cache" in again.stdout
    first_rows, again_rows = read_csv(tmp_path / "linear" / "epochs.csv"), read_csv(tmp_path / "again" / "epochs.csv")
    assert [r["val_loss"] for r in first_rows] == [r["val_loss"] for r in again_rows]  # cached features: same run


def test_cross_validation_with_a_refit_under_torchrun(tmp_path, mobilenet_weights):
    photos = copy_subset(tmp_path / "photos", 4, {"fishes": "fishes", "tools": "tools"})
    tiny = ["--mode", "linear", "--epochs", "1", "--img-size", "32", "--batch-size", "4", "--workers", "0"]
    done = torchrun(str(photos), "--folds", "2", "--refit", *tiny, "--precision", "fp32", "--no-report",
                    "--project", str(tmp_path / "runs"), "--name", "cv", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["cv"], "one run folder"
    run = tmp_path / "runs" / "cv"
    folds = {row["path"]: int(row["fold"]) for row in read_csv(run / "folds.csv")}
    assert len(folds) == 8 and sorted(set(folds.values())) == [1, 2]
    for k in (1, 2):
        held_out = {row["path"] for row in read_csv(run / f"fold-{k}" / "split.csv") if row["split"] == "val"}
        assert held_out == {path for path, number in folds.items() if number == k}  # its fold is its val split
        assert (run / f"fold-{k}" / "best.pt").is_file()
        assert json.loads((run / f"fold-{k}" / "config.json").read_text())["distributed"]["world_size"] == 2
    cv = json.loads((run / "cv.json").read_text(encoding="utf-8"))
    assert len(cv["val"]["accuracy"]["folds"]) == 2
    assert {row["path"] for row in read_csv(run / "cv_predictions.csv")} == set(folds)  # each image once
    refit = torch.load(run / "best.pt", weights_only=True)  # the final model, on every image
    assert {row["split"] for row in read_csv(run / "split.csv")} == {"train"}
    assert refit["temperature"] == pytest.approx(cv["temperature"])
    assert done.stdout.count("fold 1/2:") == 1 and done.stdout.count("--refit: the final model") == 1  # rank 0 speaks
    assert len(ft.load(run).predict(str(photos / "tools"))) == 4


@pytest.mark.parametrize("shuffle", [True, False])
def test_each_process_takes_an_equal_share_of_the_same_epoch_order(shuffle):
    whole = EpochBatchSampler(23, 4, shuffle=shuffle, seed=5)
    shares = [EpochBatchSampler(23, 4, shuffle=shuffle, seed=5, rank=r, world_size=3) for r in range(3)]
    for sampler in [whole, *shares]:
        sampler.set_epoch(2)
    orders = [share.indices() for share in shares]
    assert {len(order) for order in orders} == {8}  # 23 padded to 24
    assert set().union(*orders) == set(range(23))
    assert [orders[r][k] for k in range(8) for r in range(3)][:23] == whole.indices()
    assert {len(share) for share in shares} == {2}
    assert [len(batch) for batch in shares[0]] == [4, 4]
    assert unshard([torch.tensor(shard(list(range(23)), r, 3)) for r in range(3)]).tolist() == list(range(23))
