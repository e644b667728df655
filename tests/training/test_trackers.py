"""Experiment tracking through the real packages: W&B in offline mode and TensorBoard, read back with their own
readers; and a clear message when the extra is not installed."""

import json
import os
import sys

import pytest
from helpers import read_csv, read_wandb_records, run_cli

pytest.importorskip("wandb", reason="the wandb extra is part of the dev install")
pytest.importorskip("tensorboard", reason="the tensorboard extra is part of the dev install")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, small_dataset_module, mobilenet_weights):
    """One epoch with --wandb and --tensorboard, then --resume to a second epoch (W&B offline: no network)."""
    project = tmp_path_factory.mktemp("tracked")
    os.environ["WANDB_MODE"] = "offline"
    try:
        first = run_cli(
            "train", str(small_dataset_module), "--epochs", "1", "--img-size", "64", "--batch-size", "8",
            "--workers", "0", "--precision", "fp32", "--quiet", "--project", str(project), "--name", "run",
            "--wandb", "foldertune-tests", "--tensorboard", "--no-report",
        )  # fmt: skip
        assert first.returncode == 0, first.stderr[-3000:]
        resumed = run_cli("train", "--resume", str(project / "run"), "--epochs", "2", "--quiet")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        del os.environ["WANDB_MODE"]
    return project / "run"


@pytest.fixture(scope="module")
def small_dataset_module(tmp_path_factory):
    from helpers import copy_subset

    return copy_subset(tmp_path_factory.mktemp("data"), 8, {"fishes": "fishes", "monuments": "monuments"})


def test_wandb_offline_holds_config_steps_epochs_figures_and_the_best_checkpoint(tracked_run):
    run_id = json.loads((tracked_run / "config.json").read_text())["wandb_id"]
    logs = sorted((tracked_run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(logs) == 2, "the resumed run continues the same W&B run"
    records = [record for log in logs for record in read_wandb_records(log)]
    config = next(r.run.config for r in records if r.WhichOneof("record_type") == "run")
    settings = {item.key: json.loads(item.value_json) for item in config.update}
    assert settings["train"]["epochs"] == 1 and settings["model"]["backbone"] == "mobilenet_v2"
    history = [{item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]  # fmt: skip
    batches = read_csv(tracked_run / "batches.csv")
    logged_steps = {int(row["_step"]): float(row["train/loss"]) for row in history if "train/loss" in row}
    assert logged_steps == pytest.approx({int(row["step"]): float(row["loss"]) for row in batches}, rel=1e-5)
    epochs = [row for row in history if "val/accuracy" in row]
    assert [float(row["val/accuracy"]) for row in epochs] == pytest.approx(
        [float(row["val_acc"]) for row in read_csv(tracked_run / "epochs.csv")], abs=1e-6
    )
    figures = {key.split("/")[1] for row in history for key in row if key.startswith("figures/")}
    assert {"confusion_matrix", "train_batch"} <= figures
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert [(a.type, [m.path for m in a.manifest.contents]) for a in artifacts] == [("model", ["best.pt"])] * 2
    assert (
        json.loads(artifacts[-1].metadata)["best_epoch"]
        == json.loads((tracked_run / "metrics.json").read_text())["best_epoch"]
    )


def test_tensorboard_event_files_hold_scalars_the_confusion_matrix_and_sample_images(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked_run / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    batches = read_csv(tracked_run / "batches.csv")
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (int(row["step"]), pytest.approx(float(row["loss"]), rel=1e-5)) for row in batches
    ]
    epochs = read_csv(tracked_run / "epochs.csv")
    assert [e.value for e in events.Scalars("val/f1")] == pytest.approx([float(r["val_f1"]) for r in epochs], abs=1e-6)
    images = events.Tags()["images"]
    assert "val/confusion_matrix" in images and "figures/train_batch" in images
    matrix = events.Images("val/confusion_matrix")[-1]
    assert matrix.width > 200 and matrix.height > 200


def test_a_tracker_flag_without_its_package_names_the_extra_to_install(tmp_path):
    import subprocess

    for flag, extra in (("--wandb", "wandb"), ("--tensorboard", "tensorboard")):
        hide = f"import sys; sys.modules[{extra!r}] = None; from foldertune.cli import main; main()"
        done = subprocess.run([sys.executable, "-c", hide, "train", str(tmp_path), flag],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2
        assert done.stderr.strip() == (
            f"foldertune train: error: {flag} needs the {extra} package: pip install 'foldertune[{extra}]' "
            f"(or drop {flag})."
        )


def test_wandb_without_a_login_is_one_sentence_that_says_how_to_log_in_or_log_offline(
    tmp_path, small_dataset_module, mobilenet_weights
):
    """No API key (a fresh HOME, no WANDB_API_KEY) and W&B online: wandb.init refuses; the run says so in one line."""
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONIOENCODING="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "foldertune", "train", str(small_dataset_module), "--mode", "linear", "--epochs", "1",
         "--img-size", "64", "--workers", "0", "--quiet", "--no-report",
         "--project", str(tmp_path / "runs"), "--wandb", "foldertune-tests"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("foldertune train: error: --wandb could not start a W&B run (No API key configured")
    assert "run `wandb login`, or set WANDB_MODE=offline" in error
