"""Training end to end on real photos, with budgets of seconds: run folder contract, transfer, resume, determinism."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import (
    SAMPLE,
    assert_trained_alike,
    read_csv,
    tree_fingerprint,
    without_timing,
    write_bad_images,
)

import foldertune as ft
from foldertune.errors import UserError

TINY = {"img_size": 64, "batch_size": 8, "workers": 0, "precision": "fp32", "quiet": True, "report": False}


def test_run_folder_holds_every_file_of_the_contract(small_dataset, tmp_path, mobilenet_weights):
    run = ft.train(small_dataset, epochs=2, project=tmp_path / "runs", **TINY)
    assert run == tmp_path / "runs" / "mobilenet_v2-finetune"
    expected = {"config.json", "classes.json", "split.csv", "data_report.csv", "batches.csv", "epochs.csv",
                "best.pt", "last.pt", "metrics.json", "eval"}  # fmt: skip
    assert expected <= {p.name for p in run.iterdir()}
    assert not (run / "report.html").exists() and not (run / "plots").exists()  # report=False: numbers only
    assert {"metrics.json", "predictions.csv", "per_class.csv"} <= {p.name for p in (run / "eval" / "val").iterdir()}
    assert not list(run.glob(".*tmp"))  # no temporary files left behind

    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["settings"]["train"]["epochs"] == 2 and config["settings"]["train"]["lr"] == 5e-4
    assert config["resolved"]["precision"] == "fp32" and config["resolved"]["device"] == "cpu"
    assert config["resolved"]["preprocessing"]["crop_size"] == 64
    assert config["resolved"]["weights"].startswith("hub cache")
    assert {"torch", "torchvision", "foldertune"} <= set(config["versions"])
    assert json.loads((run / "classes.json").read_text(encoding="utf-8")) == {
        "0": "fishes",
        "1": "monuments",
        "2": "tools",
    }

    split = read_csv(run / "split.csv")
    assert len(split) == 24 and {row["split"] for row in split} == {"train", "val"}
    epochs = read_csv(run / "epochs.csv")
    assert [row["epoch"] for row in epochs] == ["1", "2"]
    assert set(epochs[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_acc_low", "val_acc_high",
                              "val_precision", "val_recall", "val_f1", "lr", "seconds", "images_per_s"}  # fmt: skip
    batches = read_csv(run / "batches.csv")
    assert [int(row["step"]) for row in batches] == list(range(1, len(batches) + 1))
    assert len(batches) == 2 * 3  # 18 training images in batches of 8: 8 + 8 + 2

    best = torch.load(run / "best.pt", weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)
    assert best["classes"] == ["fishes", "monuments", "tools"] and best["backbone"] == "mobilenet_v2"
    assert best["preprocessing"]["crop_size"] == 64 and "training" not in best
    assert last["epoch"] == 2 and {"optimizer", "scheduler", "scaler", "progress"} <= set(last["training"])

    # metrics.json agrees with an independent evaluation of best.pt on the validation files
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    val = [row for row in split if row["split"] == "val"]
    predictions = ft.load(run).predict([row["path"] for row in val])
    accuracy = sum(p.label == row["class"] for p, row in zip(predictions, val, strict=True)) / len(val)
    assert metrics["val"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["best_epoch"] == best["epoch"]
    assert [row["class"] for row in metrics["val"]["per_class"]] == ["fishes", "monuments", "tools"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):  # each score with its 95% interval
        assert metrics["val"][f"{key}_low"] <= metrics["val"][key] <= metrics["val"][f"{key}_high"], key
    assert metrics["val"]["temperature"] == best["temperature"] > 0  # fitted on val, stored in best.pt
    assert 0 <= metrics["val"]["ece"] <= 1 and 0 <= metrics["val"]["ece_before"] <= 1


def test_pretrained_linear_mode_beats_training_from_scratch(tmp_path, mobilenet_weights):
    settings = {**TINY, "img_size": 96, "batch_size": 16, "epochs": 4, "project": tmp_path}
    linear = ft.train(SAMPLE, mode="linear", **settings)
    scratch = ft.train(SAMPLE, mode="scratch", **settings)
    linear_acc = json.loads((linear / "metrics.json").read_text())["val"]["accuracy"]
    scratch_acc = json.loads((scratch / "metrics.json").read_text())["val"]["accuracy"]
    assert linear_acc >= 0.75, linear_acc
    assert linear_acc > scratch_acc + 0.2, (linear_acc, scratch_acc)


def test_same_seed_gives_same_split_and_metrics(small_dataset, tmp_path, mobilenet_weights):
    runs = [ft.train(small_dataset, epochs=1, seed=seed, project=tmp_path, **TINY) for seed in (5, 5, 6)]
    same, again, other = runs
    assert (same / "split.csv").read_text() == (again / "split.csv").read_text()
    assert without_timing(read_csv(same / "epochs.csv")) == without_timing(read_csv(again / "epochs.csv"))
    assert (same / "split.csv").read_text() != (other / "split.csv").read_text()


def test_patience_stops_a_run_that_no_longer_improves(small_dataset, tmp_path, mobilenet_weights, capsys):
    run = ft.train(
        small_dataset, epochs=8, patience=2, lr=1e-9, scheduler="constant", project=tmp_path, **TINY
    )  # a learning rate this small cannot change the validation accuracy
    assert len(read_csv(run / "epochs.csv")) == 3
    assert "early stop" in capsys.readouterr().out


def test_unreadable_files_are_reported_and_do_not_stop_training(small_dataset, tmp_path, mobilenet_weights):
    expected = write_bad_images(small_dataset / "tools")
    before = tree_fingerprint(small_dataset)
    run = ft.train(small_dataset, epochs=1, project=tmp_path, **TINY)
    report = {row["path"].rsplit("/", 1)[-1]: row for row in read_csv(run / "data_report.csv")}
    for name, word in expected.items():
        assert report[name]["problem"] == "unreadable" and word in report[name]["reason"]
    assert all(name not in (run / "split.csv").read_text() for name in expected)
    assert tree_fingerprint(small_dataset) == before


def test_a_diverging_loss_stops_with_a_message(small_dataset, tmp_path, mobilenet_weights):
    with pytest.raises(UserError, match="loss became nan at epoch 1"):
        ft.train(small_dataset, epochs=1, lr=1e12, optimizer="sgd", scheduler="constant", project=tmp_path, **TINY)


def test_resume_after_a_killed_process_matches_an_uninterrupted_run(small_dataset, tmp_path, mobilenet_weights):
    args = [str(small_dataset), "--epochs", "5", "--img-size", "64", "--batch-size", "8", "--precision", "fp32",
            "--workers", "0", "--quiet", "--no-report", "--project", str(tmp_path)]  # fmt: skip
    command = [sys.executable, "-m", "foldertune", "train", *args]
    subprocess.run([*command, "--name", "whole"], check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--name", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    interrupted_at = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 1 <= interrupted_at < 5

    done = subprocess.run(
        [sys.executable, "-m", "foldertune", "train", "--resume", str(killed), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"resuming {killed} after epoch {interrupted_at} of 5" in done.stdout
    assert_trained_alike(killed, tmp_path / "whole")
    config = json.loads((killed / "config.json").read_text())
    assert config["resumed"][0]["from_epoch"] == interrupted_at


def test_a_full_disk_while_saving_is_one_sentence_and_keeps_the_previous_checkpoint(small_dataset, tmp_path,
                                                                                  mobilenet_weights):  # fmt: skip
    import resource

    args = ["train", str(small_dataset), "--epochs", "1", "--img-size", "64", "--batch-size", "8", "--precision",
            "fp32", "--workers", "0", "--quiet", "--no-report", "--project", str(tmp_path),
            "--name", "run"]  # fmt: skip
    assert subprocess.run([sys.executable, "-m", "foldertune", *args], capture_output=True).returncode == 0
    run = tmp_path / "run"
    before = (run / "last.pt").read_bytes()

    def limit_file_size() -> None:  # as a nearly full disk: any file over 12 MB cannot be written
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored signals stay ignored in the child
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000_000, 12_000_000))

    resume = [sys.executable, "-m", "foldertune", "train", "--resume", str(run), "--epochs", "2", "--quiet"]
    full = subprocess.run(resume, capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size)
    assert full.returncode == 2, full.stderr
    message = full.stderr.strip().splitlines()[-1]
    assert f"cannot write '{run / 'last.pt'}'" in message and "previous version of the file is unchanged" in message
    assert "Traceback" not in full.stderr
    assert (run / "last.pt").read_bytes() == before  # epoch 1's last.pt, untouched
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    again = subprocess.run(resume, capture_output=True, text=True, timeout=600)  # space is back
    assert again.returncode == 0, again.stderr
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


def test_bf16_autocast_and_adam_step_schedule_train_on_the_cpu(small_dataset, tmp_path, mobilenet_weights, capsys):
    settings = {**TINY, "precision": "bf16", "quiet": False}
    run = ft.train(small_dataset, epochs=2, optimizer="adam", scheduler="step", project=tmp_path, verbose=True,
                   **settings)  # fmt: skip
    assert "4 depthwise layers train with a faster bf16 backward" in capsys.readouterr().out  # models/depthwise.py
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["precision"] == "bf16" and config["settings"]["train"]["optimizer"] == "adam"
    epochs = read_csv(run / "epochs.csv")
    assert all(float(row["train_loss"]) < 5 for row in epochs)  # finite and sane
    assert float(epochs[0]["lr"]) == float(epochs[1]["lr"]) == 5e-4  # step decay only after 7 epochs


def test_a_presplit_folder_and_a_manifest_keep_their_given_splits(small_dataset, tmp_path, mobilenet_weights):
    from foldertune.data.scan import scan_folder
    from foldertune.data.split import assign_splits, materialize, write_manifest

    scan = scan_folder(small_dataset, progress=False)
    records, _ = assign_splits(scan.images, val_fraction=0.5, test_fraction=0.0, seed=9)
    presplit = materialize(records, scan.root, tmp_path / "presplit", how="copy")
    write_manifest(tmp_path / "manifest.csv", records)

    from_folder = ft.train(presplit, epochs=1, project=tmp_path, run_name="folder", **TINY)
    rows = read_csv(from_folder / "split.csv")
    assert sum(row["split"] == "val" for row in rows) == 12  # the folder's own val/, not a new 20% split
    assert all(f"/presplit/{row['split']}/" in row["path"] for row in rows)

    from_manifest = ft.train(manifest=str(tmp_path / "manifest.csv"), epochs=1, project=tmp_path, run_name="m", **TINY)
    expected = {(r.path, r.label, r.split) for r in records}
    assert {(row["path"], row["class"], row["split"]) for row in read_csv(from_manifest / "split.csv")} == expected


def test_a_run_that_stopped_early_is_finished_and_resume_says_so(small_dataset, tmp_path, mobilenet_weights):
    run = ft.train(small_dataset, epochs=6, patience=1, lr=1e-9, scheduler="constant", project=tmp_path, **TINY)
    assert len(read_csv(run / "epochs.csv")) == 2
    with pytest.raises(
        UserError, match=r"stopped early after epoch 2 \(no better validation accuracy for 1 epoch\).*weights="
    ):
        ft.resume(run)


def test_a_relative_manifest_with_relative_paths_gives_absolute_paths(
    small_dataset, tmp_path, mobilenet_weights, monkeypatch
):
    rows = ["path,class,split"]
    for i, photo in enumerate(sorted(small_dataset.rglob("*.webp"))):
        rows.append(f"{photo.relative_to(small_dataset.parent)},{photo.parent.name},{'val' if i % 4 == 0 else 'train'}")
    (small_dataset.parent / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.chdir(small_dataset.parent)  # `--manifest manifest.csv`, run from the manifest's folder
    run = ft.train(manifest="manifest.csv", epochs=1, project=tmp_path / "runs", **TINY)
    paths = [row["path"] for row in read_csv(run / "split.csv")]
    assert len(paths) == 24 and all(path.startswith(str(small_dataset)) for path in paths)
    assert json.loads((run / "metrics.json").read_text())["val"]["images"] == 6


def test_running_out_of_gpu_memory_names_a_batch_size_to_try():
    # No GPU here to exhaust: the error torch raises on one is raised by hand inside the guard training uses.
    from foldertune.device import choose_runtime
    from foldertune.training.loop import memory_hint

    expected = r"epoch 3 with --batch-size 32; try --batch-size 16"
    with pytest.raises(UserError, match=expected) as caught, memory_hint(choose_runtime("cpu", "fp32"), 32, 3):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "\n" not in str(caught.value)


def test_resume_refuses_data_that_changed_under_the_same_names(small_dataset, tmp_path, mobilenet_weights):
    run = ft.train(small_dataset, epochs=1, project=tmp_path, **TINY)
    photos = sorted((small_dataset / "tools").iterdir())
    original = photos[0].read_bytes()
    photos[0].write_bytes(photos[1].read_bytes())  # another photo under the same name
    with pytest.raises(UserError, match=rf"1 image\(s\) of this run changed since it started \(first: {photos[0]}: "):
        ft.resume(run, epochs=2)
    photos[0].write_bytes(original)  # same bytes back, but rewritten: the modification time tells
    with pytest.raises(UserError, match=r"modified since\); .*restore them with their modification times \(cp -p"):
        ft.resume(run, epochs=2)
    stat = photos[0].stat()
    rows = {row["path"]: row for row in read_csv(run / "data_check.csv")}
    os.utime(photos[0], ns=(stat.st_atime_ns, int(rows[str(photos[0])]["mtime_ns"])))  # as it was
    assert ft.resume(run, epochs=2) == run
    assert len(read_csv(run / "epochs.csv")) == 2


def test_the_run_records_its_data_check_and_keeps_copies_in_one_split(small_dataset, tmp_path, mobilenet_weights):
    fish = sorted((small_dataset / "fishes").iterdir())
    for photo in fish:
        shutil.copy(photo, photo.with_name("copy " + photo.name))  # every fish twice
    run = ft.train(small_dataset, epochs=1, project=tmp_path, **TINY)
    split = {row["path"]: row["split"] for row in read_csv(run / "split.csv")}
    assert all(split[str(p)] == split[str(p.with_name("copy " + p.name))] for p in fish)
    assert {split[str(p)] for p in fish} == {"train", "val"}
    rows = read_csv(run / "data_check.csv")
    assert len(rows) == len(split)
    assert {row["findings"] for row in rows if "fishes" in row["path"]} == {"duplicate"}
    assert "Data check" in (ft.report(run)).read_text(encoding="utf-8")


def test_finish_evaluates_a_run_whose_epochs_are_all_trained(chinese_run, tmp_path):
    from foldertune.training.fit import finish

    run = shutil.copytree(chinese_run[0], tmp_path / "run")  # as if a signal had stopped its final evaluation
    (run / "metrics.json").unlink()
    shutil.rmtree(run / "eval")
    assert finish(run, quiet=True, log=lambda *_: None) == run
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    before = json.loads((chinese_run[0] / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["val"]["accuracy"] == before["val"]["accuracy"] and (run / "eval" / "val" / "scores.npy").is_file()
