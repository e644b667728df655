"""The command line as a user runs it: real subprocesses, real photos, exit codes and one-line errors."""

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import re
import subprocess
import sys
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import CHINESE_CLASSES
from helpers import copy_subset, read_csv, run_cli, tree_fingerprint

from foldertune.cli import COMMANDS, NO_FLAG, TRAIN_ONLY_FLAGS, build_parser
from foldertune.config import DataConfig, ModelConfig, RunConfig, TrainConfig, field_docs, flag
from foldertune.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"


def run_settings() -> dict[str, tuple[dataclasses.Field, str]]:
    """Every setting of a run (the sections' fields and RunConfig's own, not the sections): {name: (field, doc)}."""
    settings = {}
    for klass in (DataConfig, ModelConfig, TrainConfig, RunConfig):
        hints, docs = typing.get_type_hints(klass), field_docs(klass)
        for f in dataclasses.fields(klass):
            if not dataclasses.is_dataclass(hints[f.name]):
                settings[f.name] = (f, docs.get(f.name, ""))
    return settings


def train_flags() -> dict[str, argparse.Action]:
    """`train`'s arguments by their flag (DATA for the positional), from the real parser."""
    train = build_parser().commands["train"]
    return {option: action for action in train._actions for option in action.option_strings or [action.metavar]}


def test_help_for_every_command():
    assert run_cli("--help").returncode == 0
    for command in COMMANDS:
        done = run_cli(command, "--help")
        assert done.returncode == 0 and "example:" in done.stdout, command


def test_help_and_import_foldertune_do_not_import_torch():
    script = (
        "import sys, foldertune\n"
        "from foldertune.cli import main\n"
        "for argv in ([], ['train', '--help'], ['export', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().endswith("False"), done.stdout[-300:] + done.stderr


def test_every_setting_is_a_train_flag_and_every_train_flag_a_setting():
    settings, flags = run_settings(), train_flags()
    flags.pop("-h"), flags.pop("--help")
    assert set(NO_FLAG) <= set(settings) and not set(TRAIN_ONLY_FLAGS) & set(settings)
    assert {action.dest for action in flags.values()} == (set(settings) - set(NO_FLAG)) | set(TRAIN_ONLY_FLAGS)
    for name in set(settings) - set(NO_FLAG):
        assert flags[flag(name)].dest == name, name


def test_train_help_shows_each_setting_its_docstring_and_default():
    flags = {action.dest: action for action in train_flags().values()}
    for name, (setting, doc) in run_settings().items():
        if name in NO_FLAG:
            continue
        help_text = flags[name].help
        meaning = doc.replace("`", "'").split("None: ")[0].split("False: ")[0]
        words = [word.strip(";,.:()") for word in meaning.split()[1:4]]  # the first one is lower-cased
        assert all(word in help_text for word in words), (name, words, help_text)
        if setting.default is not False and (setting.default is not None or "None: " in doc):
            assert "(default: " in help_text, name
    text = " ".join(build_parser().commands["train"].format_help().split())
    for shown in (
        "--val F share of each class held out for validation when the folder is not already split (default: 0.2)",
        "--test F share of each class held out as a test set when the folder is not already split (default: 0)",
        "(default: per mode, linear 3e-3, finetune 5e-4, scratch 1e-3)",
        "(default: mobilenet_v2)",
        "--no-pretrained start from random weights;",
        "(default: start from ImageNet weights)",
        "(default: no W&B; --wandb alone: foldertune)",
        "(default: the bundled sample photos)",
        "--resume RUN continue RUN from its last.pt",
        "{linear,finetune,scratch}",
        "(default: finetune)",
    ):
        assert shown in text, shown


def test_the_readme_table_lists_exactly_the_train_flags():
    section = README.read_text(encoding="utf-8").split("### Every `train` flag", 1)[1].split("\n#", 1)[0]
    listed = [re.match(r"\| `([^` ]+)", line).group(1) for line in section.splitlines() if line.startswith("| `")]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(train_flags()) - {"-h", "--help"}


def test_chinese_class_names_survive_training_and_prediction(chinese_run, tmp_path):
    run, data = chinese_run
    classes = json.loads((run / "classes.json").read_text(encoding="utf-8"))
    assert sorted(classes.values()) == sorted(CHINESE_CLASSES.values())
    assert "鱼" in (run / "classes.json").read_text(encoding="utf-8")  # stored as UTF-8, not \u escapes
    assert "纪念碑" in (run / "split.csv").read_text(encoding="utf-8")

    broken = tmp_path / "broken.jpg"  # the shared data folder stays as it is
    broken.write_bytes(b"not really")
    out = tmp_path / "预测.csv"
    done = run_cli(
        "predict", str(run), str(data / "鱼"), str(data / "工具 箱"), str(broken), "--topk", "2", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR: not an image" in done.stdout and "鱼" in done.stdout
    rows = read_csv(out)
    assert len(rows) == 17
    assert list(rows[0]) == ["path", "label", "probability", "top_label", "unknown_score", "top1", "p1", "top2", "p2",
                             "error"]  # fmt: skip
    unreadable = [row for row in rows if row["path"].endswith("broken.jpg")]
    assert unreadable[0]["error"] and unreadable[0]["label"] == ""
    good = [row for row in rows if not row["error"]]
    assert {row["label"] for row in good} <= set(CHINESE_CLASSES.values())
    assert all(float(row["p1"]) >= float(row["p2"]) for row in good)

    as_json = tmp_path / "p.json"
    assert (
        run_cli(
            "predict", str(run / "best.pt"), str(data / "鱼" / "fish1.webp"), "--out", str(as_json), "--quiet"
        ).returncode
        == 0
    )
    record = json.loads(as_json.read_text(encoding="utf-8"))[0]
    assert record["label"] in CHINESE_CLASSES.values() and len(record["topk"]) == 3


def test_train_without_data_uses_the_bundled_sample(tmp_path, mobilenet_weights):
    done = run_cli("train", "--epochs", "1", "--img-size", "32", "--mode", "linear", "--quiet", "--workers", "0",
                   "--no-report", "--project", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "bundled sample" in done.stdout and "val  accuracy" in done.stdout
    assert f"run folder: {tmp_path / 'mobilenet_v2-linear'}" in done.stdout


def test_the_cycle_collector_pauses_while_a_run_loads_and_is_back_on_for_training():
    """`train` turns Python's cycle collector off while its data and torch load, then freezes what exists: the
    collector must be on again afterwards, also when loading failed (a user error), or cycles made while training
    would never be freed."""
    from foldertune.cli import _collector_paused

    try:
        for fails in (False, True):
            with contextlib.suppress(UserError), _collector_paused():
                assert not gc.isenabled()
                cycle = [object()]
                cycle.append(cycle)  # made while paused: frozen at the end, never walked again
                if fails:
                    raise UserError("the data folder is empty")
            assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_split_writes_manifest_counts_and_linked_folders(tmp_path):
    data = copy_subset(tmp_path / "data", 10, {"fishes": "鱼", "tools": "tools"})
    before = tree_fingerprint(data)
    out = tmp_path / "split"
    done = run_cli("split", str(data), "--val", "0.2", "--test", "0.1", "--seed", "0", "--out", str(out), "--link")
    assert done.returncode == 0, done.stderr
    assert tree_fingerprint(data) == before
    manifest = read_csv(out / "split.csv")
    assert len(manifest) == 20 and {row["split"] for row in manifest} == {"train", "val", "test"}
    assert len(list((out / "val" / "鱼").iterdir())) == 2 and (out / "test" / "tools").is_dir()
    counts = (out / "split_counts.csv").read_text(encoding="utf-8")
    assert "鱼,7,2,1,10" in counts and "(all),14,4,2,20" in counts
    assert "鱼" in done.stdout
    again = run_cli("split", str(data), "--manifest", str(out / "split.csv"))
    assert again.returncode == 2 and "--force" in again.stderr
    assert b"\r" not in (out / "split.csv").read_bytes()  # lines end in \n: `grep ',val$' split.csv` finds rows
    again = run_cli("split", str(data), "--out", str(out), "--link")  # the place the --out flag chose
    assert again.returncode == 2 and f"--out '{out / 'split.csv'}' already exists" in again.stderr, again.stderr
    assert "--manifest" not in again.stderr
    # the manifest drives training
    same = run_cli(
        "split", str(data), "--seed", "0", "--val", "0.2", "--test", "0.1", "--manifest", str(tmp_path / "m.csv")
    )
    assert same.returncode == 0 and (tmp_path / "m.csv").read_text(encoding="utf-8") == (out / "split.csv").read_text(
        encoding="utf-8"
    )


def user_error_cases(tmp_path):
    """case -> (arguments, a piece of the one-line message that names the culprit)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    one_class = copy_subset(tmp_path / "one", 4, {"fishes": "fish"})
    two = copy_subset(tmp_path / "two", 4, {"fishes": "fish", "tools": "tool"})
    alike = copy_subset(tmp_path / "alike", 2, {"fishes": "fish", "tools": "fish ", "renewable": "wind"})
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "latin1.csv").write_bytes("path,class,split\ncaf\xe9.jpg,a,train\n".encode("latin-1"))
    taken = str(tmp_path / "runs" / "taken")
    return {
        "missing data folder": (["train", str(tmp_path / "nope")], "does not exist"),
        "data is a file": (["train", str(tmp_path / "notes.txt")], "is a file"),
        "empty folder": (["train", str(empty)], "no images found in"),
        "single class": (["train", str(one_class)], "only one class ('fish')"),
        "names alike": (["check", str(alike)], "class folders 'fish' and 'fish ' in"),
        "unknown backbone": (["train", str(two), "--model", "resnet19"], "did you mean 'resnet18'"),
        "zero epochs": (["train", str(two), "--epochs", "0"], "--epochs"),
        "not a number": (["train", str(two), "--epochs", "ten"], "--epochs"),
        "negative lr": (["train", str(two), "--lr", "-1"], "--lr"),
        "negative seed": (["train", str(two), "--seed", "-1"], "--seed"),
        "bad fraction": (["train", str(two), "--val", "1.5"], "--val"),
        "bad choice": (["train", str(two), "--mode", "freeze"], "--mode"),
        "unknown flag": (["train", str(two), "--epoch", "3"], "did you mean --epochs"),
        "DATA and manifest": (["train", str(two), "--manifest", "m.csv"], "not both"),
        "manifest not UTF-8": (["train", "--manifest", str(tmp_path / "latin1.csv")], "UTF-8"),
        "runs inside the data": (["train", str(two), "--project", str(two / "runs")], "into the data folder"),
        "project is a file": (["train", str(two), "--project", str(tmp_path / "notes.txt")], "is a file, not a folder"),
        "missing weights file": (["train", str(two), "--weights", str(tmp_path / "w.pth")], "--weights"),
        "fp16 on cpu": (["train", str(two), "--precision", "fp16", "--device", "cpu"], "--precision fp16"),
        "existing run name": (["train", str(two), "--project", str(tmp_path / "runs"), "--name", "taken"], "exists"),
        "resume a non-run": (["train", "--resume", taken], "not a foldertune run folder"),
        "resume with other flags": (["train", "--resume", taken, "--lr", "0.1", "--name", "x"], "--lr, --name"),
        "predict without checkpoint": (["predict", taken, str(two)], "is not a run folder (it has no config.json)"),
        "predict bad out": (["predict", str(tmp_path / "x.pt"), str(two), "--out", "p.txt"], "--out"),
        "not a checkpoint": (["predict", str(tmp_path / "notes.txt"), str(two)], "not a PyTorch file"),
        "split single class": (["split", str(one_class)], "only one class ('fish')"),
        "split bad fraction": (["split", str(two), "--val", "-0.1"], "--val"),
        "split negative seed": (["split", str(two), "--seed", "-1"], "--seed"),
        "link without out": (["split", str(two), "--link"], "--link needs --out"),
        "split out is a file": (["split", str(two), "--out", str(tmp_path / "notes.txt")], "is a file"),
        "split missing folder": (["split", str(tmp_path / "nope")], "does not exist"),
        "check missing folder": (["check", str(tmp_path / "nope")], "does not exist"),
        "check an image file": (["check", str(sorted((two / "fish").iterdir())[0])], "is a file, not a folder"),
        "check without data": (["check"], "check needs DATA"),
        "check out in the data": (["check", str(two), "--out", str(two / "c.csv")], "--out"),
        "check out not ours": (["check", str(two), "--out", str(tmp_path / "notes.txt")], "not a check CSV"),
        "quarantine in the data": (["check", str(two), "--quarantine", str(two / "q")], "inside the data folder"),
        "restore a plain folder": (["check", "--restore", str(empty)], "has no quarantine.csv"),
        "check bad min side": (["check", str(two), "--min-side", "0"], "--min-side"),
        "predict without paths": (["predict", str(tmp_path / "x.pt")], "predict needs PATH"),
        "predict two videos": (["predict", str(tmp_path / "x.pt"), "a.mp4", "b.mov"], "one video at a time"),
        "video out not mp4": (["predict", str(tmp_path / "x.pt"), "a.mp4", "--out", "a.csv"], "must end in .mp4"),
        "serve bad port": (["serve", taken, "--port", "0"], "--port"),
        "export bad opset": (["export", taken, "--opset", "99"], "--opset"),
    }


def test_every_user_error_is_one_sentence_and_exit_code_2(tmp_path, mobilenet_weights):
    cases = user_error_cases(tmp_path)
    with ThreadPoolExecutor(max_workers=3) as pool:  # most cases answer before torch is even imported
        runs = pool.map(lambda case: run_cli(*case[0], cwd=tmp_path), cases.values())
        results = dict(zip(cases, runs, strict=True))
    for case, done in results.items():
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (case, done.returncode, done.stderr)
        assert len(lines) == 1 and "error:" in lines[0], (case, done.stderr)
        assert cases[case][1] in lines[0], (case, lines[0])
        assert "Traceback" not in done.stderr and not list((tmp_path / "runs").glob("*-finetune*")), case
    assert not (tmp_path / "two" / "runs").exists()  # nothing was written into the data folder


def test_names_weights_and_resume_targets_are_refused_before_torch_loads_or_the_data_is_read(tmp_path):
    data = copy_subset(tmp_path / "photos", 4, {"fishes": "fish"})  # one class: the scan would refuse it
    empty_hub = tmp_path / "torch_home"  # no weights cached, and (below) no network to fetch them from
    cases = {
        "--name ../escape": (["train", str(data), "--name", "../escape"], "--name '../escape' must be a plain folder"),
        "no resnet18 weights": (["train", str(data), "--model", "resnet18"], "no ImageNet weights for resnet18"),
        "--resume runs/nope": (["train", "--resume", "runs/nope"], "--resume 'runs/nope' is not a foldertune run"),
    }
    for case, (args, sentence) in cases.items():
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "foldertune", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "TORCH_HOME": str(empty_hub), "https_proxy": "http://127.0.0.1:9", "no_proxy": ""},
        )  # fmt: skip  (-X importtime lists every module imported, on stderr)
        imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line]
        errors = [line for line in done.stderr.splitlines() if "import time:" not in line]
        assert done.returncode == 2, (case, done.stderr[-2000:])
        assert errors == [f"foldertune train: error: {errors[0].split('error: ', 1)[1]}"] and sentence in errors[0], (
            case
        )
        assert "Traceback" not in done.stderr, case
        assert "torch" not in imported, f"{case}: refused only after importing torch"
        assert "only one class" not in done.stderr, f"{case}: refused only after the scan"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def test_epoch_lines_agree_with_the_logs_and_extending_a_finished_run_keeps_learning(tmp_path, mobilenet_weights):
    data = copy_subset(tmp_path / "photos", 8, {"fishes": "fishes", "monuments": "monuments", "tools": "tools"})
    run = tmp_path / "runs" / "run"
    done = run_cli("train", str(data), "--epochs", "2", "--img-size", "64", "--batch-size", "8", "--workers", "0",
                   "--quiet", "--no-report", "--project", str(tmp_path / "runs"), "--name", "run")  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    batches = read_csv(run / "batches.csv")
    assert f"| lr {float(batches[-1]['lr']):.2e} " in lines[-1], lines[-1]  # the rate the last step used, not 0
    best_epoch = json.loads((run / "metrics.json").read_text())["best_epoch"]
    epoch_loss = re.search(r"val loss (\d\.\d{4})", lines[best_epoch - 1]).group(1)
    final_loss = re.search(r"val +accuracy .* loss (\d\.\d{4})", done.stdout).group(1)
    calibration = json.loads((run / "eval" / "val" / "metrics.json").read_text())["calibration"]
    # the same checkpoint on the same images: the epoch's loss is the final one before the temperature
    assert (epoch_loss, final_loss) == (f"{calibration['nll_before']:.4f}", f"{calibration['nll']:.4f}"), done.stdout

    extended = run_cli("train", "--resume", str(run), "--epochs", "3", "--quiet")
    assert extended.returncode == 0 and "Traceback" not in extended.stderr, extended.stderr
    assert "--epochs 3 instead of 2: the learning rate follows the cosine schedule of a 3-epoch run" in extended.stdout
    rows = read_csv(run / "batches.csv")
    per_epoch, new = len(batches) // 2, [row for row in rows if row["epoch"] == "3"]
    step = int(new[0]["step"]) - 1  # steps done before it; the schedule: one epoch of warm-up, then cosine to 0
    expected = 5e-4 * 0.5 * (1 + math.cos(math.pi * (step - per_epoch) / (3 * per_epoch - per_epoch)))
    assert float(new[0]["lr"]) == pytest.approx(expected, rel=1e-6) and expected > 1e-4
    assert all(float(row["lr"]) > 0 for row in new)


def test_resume_refuses_only_flags_that_change_the_run_and_names_negated_flags_the_right_way_round(
    chinese_run, tmp_path
):
    import shutil

    source, data = chinese_run
    run = tmp_path / "runs" / source.name
    shutil.copytree(source, run)
    settings = json.loads((run / "config.json").read_text(encoding="utf-8"))["settings"]
    assert settings["report"] is True and settings["data"]["img_size"] == 64
    # a flag that repeats the run's own setting changes nothing: the run is then simply finished
    done = run_cli("train", "--resume", str(run), "--img-size", "64", "--mode", settings["train"]["mode"])
    assert done.returncode == 2 and "cannot change" not in done.stderr, done.stderr
    assert "already finished" in done.stderr
    done = run_cli("train", "--resume", str(run), "--img-size", "96")
    assert done.returncode == 2 and done.stderr.strip().endswith(
        "--img-size cannot change when resuming (the run keeps its config.json); drop it."
    ), done.stderr
    done = run_cli("train", "--resume", str(run), "--no-report", "--lr", "0.5")
    assert done.stderr.strip().endswith("--lr, --no-report cannot change when resuming (the run keeps its "
                                        "config.json); drop them."), done.stderr  # fmt: skip
    # --resume auto with other settings: --no-report given here, not when the run was trained
    done = run_cli("train", str(data), "--project", str(tmp_path / "runs"), "--name", source.name, "--resume", "auto",
                   "--no-report", "--img-size", "64")  # fmt: skip
    assert done.returncode == 2 and "--no-report not given there, given here" in done.stderr, done.stderr


def test_a_data_folder_given_with_dots_is_stored_as_a_tidy_absolute_path(tmp_path):
    data = copy_subset(tmp_path / "data", 3, {"fishes": "fishes", "tools": "tools"})
    (tmp_path / "work").mkdir()
    done = run_cli("split", "../data", "--manifest", str(tmp_path / "m.csv"), "--quiet", cwd=tmp_path / "work")
    assert done.returncode == 0, done.stderr
    paths = [row["path"] for row in read_csv(tmp_path / "m.csv")]
    assert len(paths) == 6 and all(path.startswith(f"{data}/") and "/../" not in path for path in paths), paths


def test_weights_that_do_not_fit_leave_no_run_folder_and_one_without_an_epoch_gets_advice(tmp_path, mobilenet_weights):
    import torch

    from foldertune.models.build import build_model

    data = copy_subset(tmp_path / "photos", 3, {"fishes": "fish", "tools": "tool"})
    torch.save(build_model("resnet18", num_classes=2).state_dict(), tmp_path / "resnet.pth")
    common = ("--img-size", "64", "--workers", "0", "--quiet", "--no-report", "--project", str(tmp_path / "runs"),
              "--name", "r")  # fmt: skip
    failed = run_cli("train", str(data), "--weights", str(tmp_path / "resnet.pth"), *common)  # mobilenet_v2's place
    run = tmp_path / "runs" / "r"
    assert failed.returncode == 2 and "do not fit mobilenet_v2" in failed.stderr, failed.stderr
    assert not run.exists()  # a retry with the right weights takes the same name, not r-2
    assert run_cli("train", str(data), "--epochs", "1", *common).returncode == 0
    (run / "last.pt").unlink()  # as a run stopped before its first epoch had ended leaves it
    again = run_cli("train", str(data), *common)
    assert again.returncode == 2 and again.stderr.strip().endswith(
        f"run folder '{run}' already exists but holds no finished epoch (no last.pt); pick another --name, or "
        "remove that folder and run again."
    ), again.stderr
    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 2 and resumed.stderr.strip().endswith(
        "nothing to continue; remove that folder and run the same command again, or start one with another --name."
    ), resumed.stderr


def test_a_data_folder_given_where_a_run_belongs_is_named_as_one(tmp_path):
    data = copy_subset(tmp_path / "photos", 1, {"fishes": "fish", "tools": "tool"})
    photo = next((data / "fish").iterdir())
    expected = f"'{data}' is not a run folder (it has no config.json); pass a run folder that foldertune train made"
    for command in (["predict", str(data), str(photo)], ["evaluate", str(data)], ["export", str(data)]):
        done = run_cli(*command, cwd=tmp_path)
        assert done.returncode == 2 and expected in done.stderr, (command, done.stderr)


def test_check_names_a_mistyped_data_before_its_outputs(tmp_path):
    (tmp_path / "check.csv").write_text("notes of mine\n")  # an output check would refuse to overwrite
    photo = copy_subset(tmp_path / "photos", 1, {"fishes": "fish"}) / "fish" / "fish1.webp"
    done = run_cli("check", str(photo), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().endswith(
        f"DATA '{photo}' is a file, not a folder; pass a data folder (one sub-folder per class), a split manifest "
        "(.csv) or a run folder."
    ), done.stderr
    assert (tmp_path / "check.csv").read_text() == "notes of mine\n"


def test_output_piped_into_a_reader_that_stops_early_ends_without_a_traceback(tmp_path):
    data = copy_subset(tmp_path / "photos", 3, {"fishes": "fish", "tools": "tool"})
    process = subprocess.Popen(
        [sys.executable, "-m", "foldertune", "check", str(data), "--out", str(tmp_path / "c.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"},  # each line out as it is printed
    )  # fmt: skip
    assert process.stdout.readline().startswith(b"data: ")  # then the reader goes, as `| head -1` does
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1 and stderr == "", stderr
