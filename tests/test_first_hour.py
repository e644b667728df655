"""A new user's first hour: every mistake ends in exit status 2 and one sentence, as real CLI processes.

Each test runs the real command line (or the API) on real photos and asserts the exit status, that no traceback is
shown, and the sentence. The run they share is the session's `chinese_run` (trained through the CLI).
"""

import json
import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from helpers import SAMPLE, copy_subset, run_cli
from PIL import Image

import foldertune as ft


def refused(done, *sentence: str) -> str:
    """The one line a refusal prints, checked: exit 2, no traceback, each part of `sentence` in it."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    for part in sentence:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture
def run(chinese_run, tmp_path):
    """A private copy of the session's run folder (some tests write into it)."""
    return shutil.copytree(chinese_run[0], tmp_path / "runs" / "first")


def test_paths_that_cannot_be_written_are_one_sentence_in_every_command(run, tmp_path, chinese_run):
    photo = sorted((chinese_run[1] / "鱼").iterdir())[0]
    cases = {
        ("export", str(run), "--out", "/proc/model.onnx"): ["--out '/proc/model.onnx' cannot be written"],
        ("export", str(run), "--out", f"{photo}/model.onnx"): [f"'{photo}' is a file, not a folder"],
        ("export", str(run), "--out", "model.txt"): ["--out 'model.txt' must end in .onnx", "model.onnx"],
        ("export", str(run), "--format", "torchscript", "--out", "m.onnx"): ["must end in .pt for a TorchScript"],
        ("predict", str(run), str(photo), "--out", "/proc/preds.csv"): ["--out '/proc/preds.csv' cannot be written"],
        ("evaluate", str(run), "--out", "/proc/eval"): ["--out '/proc/eval' cannot be written"],
        ("explain", str(run), str(photo), "--out", f"{photo}/cams"): [f"'{photo}' is a file"],
        ("compare", str(run), str(chinese_run[0]), "--out", "/proc/compare"): [
            "--out '/proc/compare' cannot be written"
        ],
        # no check before the work here: the command line's last resort turns the OSError into the sentence
        ("check", str(chinese_run[1]), "--out", "/proc/check.csv", "--quiet"): ["'/proc/check.csv'"],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(cases, pool.map(lambda argv: run_cli(*argv, cwd=tmp_path), cases), strict=True))
    for argv, parts in cases.items():
        refused(done[argv], f"foldertune {argv[0]}: error:", *parts)
    assert photo.is_file() and not (tmp_path / "cams").exists()


def test_predict_on_a_folder_without_images_says_so(run, tmp_path):
    (tmp_path / "noimgs").mkdir()
    (tmp_path / "noimgs" / "notes.txt").write_text("no pictures here\n")
    done = run_cli("predict", str(run), str(tmp_path / "noimgs"))
    refused(done, "no image file found in", "noimgs", "skipped 1 other file: notes.txt")
    with pytest.raises(ft.UserError, match="no image file found"):
        ft.load(run).predict(tmp_path / "noimgs")


def test_serve_on_a_busy_port_refuses_before_loading(run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("serve", str(run), "--port", str(port), timeout=120)
    line = refused(done, f"port {port} on 127.0.0.1 is in use", "--port")
    assert "serving" not in done.stdout, done.stdout
    free = int(line.rsplit("--port ", 1)[1].rstrip("."))
    assert free != port and 0 < free < 65536


def test_wrong_diagnoses_are_now_the_right_ones(run, tmp_path, chinese_run):
    data = copy_subset(tmp_path / "data", 6, {"fishes": "fishes", "tools": "tools"})
    (tmp_path / "fake.pt").write_text("a text file, not a checkpoint\n")
    done = run_cli("train", str(data), "--val", "0", "--project", str(tmp_path / "runs"), "--quiet")
    refused(done, "--val 0 leaves no validation images")
    done = run_cli("predict", str(tmp_path / "fake.pt"), str(data))
    refused(done, "'", "fake.pt' is not a PyTorch file")
    done = run_cli("evaluate", str(run), str(data), "--split", "test", "--no-figures")  # DATA is not split
    refused(done, "is not split into train/, val/ and test/ folders, so --split test has nothing to choose from")
    # A folder that holds copies of the run's training images: the scores are inflated, and evaluate says so.
    trained = {row["path"] for row in csv_rows(run / "split.csv") if row["split"] == "train"}
    dirty = tmp_path / "dirty"
    for path in sorted(trained)[:6]:
        target = dirty / path.split("/")[-2] / path.split("/")[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    done = run_cli("evaluate", str(run), str(dirty), "--no-figures", "--quiet", "--out", str(tmp_path / "ev"))
    assert done.returncode == 0, done.stderr
    assert "warning: 6 of the 6 images in" in done.stdout and "copies of this run's training images" in done.stdout
    clean = tmp_path / "clean" / "鱼"  # photos of the sample the run never saw (it has the first 8 of each class)
    clean.mkdir(parents=True)
    for photo in sorted((SAMPLE / "fishes").iterdir())[10:12]:
        shutil.copy(photo, clean / photo.name)
    clean = clean.parent
    done = run_cli("evaluate", str(run), str(clean), "--no-figures", "--quiet", "--out", str(tmp_path / "ev2"))
    assert done.returncode == 0 and "copies of this run" not in done.stdout, done.stdout + done.stderr


def csv_rows(path):
    from helpers import read_csv

    return read_csv(path)


def test_a_split_folder_says_val_is_not_used_and_emoji_names_warn_once(tmp_path):
    names = {"fishes": "🐟 fish", "tools": "🔧 tools"}
    for split, (start, stop) in {"train": (0, 5), "val": (5, 7)}.items():
        for source, name in names.items():
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for photo in sorted((SAMPLE / source).iterdir())[start:stop]:
                shutil.copy(photo, tmp_path / "data" / split / name / photo.name)
    done = run_cli(
        "train", str(tmp_path / "data"), "--val", "0.3", "--epochs", "1", "--img-size", "32", "--batch-size", "4",
        "--workers", "0", "--precision", "fp32", "--no-pretrained", "--quiet", "--project", str(tmp_path / "runs"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "is already split into train/val folders, so --val and --test are not used" in done.stdout
    warned = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warned) == 1 and "'🐟 fish', '🔧 tools'" in warned[0] and "boxes" in warned[0], done.stderr
    assert "Glyph" not in done.stderr and "Traceback" not in done.stderr
    # evaluate draws the galleries alone: its warning names the classes too, not a picture's caption
    evaluated = run_cli("evaluate", str(next((tmp_path / "runs").iterdir())), "--quiet")
    warned = [line for line in evaluated.stderr.splitlines() if line.strip()]
    assert evaluated.returncode == 0 and len(warned) == 1, evaluated.stderr
    assert "'🐟 fish', '🔧 tools'" in warned[0] and "true " not in warned[0] and "\\n" not in warned[0], warned


def test_compare_writes_outside_the_run_list_and_skips_what_is_not_a_run(run, tmp_path):
    runs = run.parent
    shutil.copytree(run, runs / "second")
    (runs / "notes").mkdir()
    done = run_cli("compare", str(run), str(runs / "second"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "compare" / "compare.csv").is_file() and not (runs / "compare").exists()
    done = run_cli("compare", *sorted(str(p) for p in runs.iterdir()), "--out", str(tmp_path / "all"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"note: left out '{runs / 'notes'}'" in done.stdout
    assert (tmp_path / "all" / "compare.csv").read_text(encoding="utf-8").count("\n") == 3
    done = run_cli("compare", str(run), str(runs / "second"), cwd=tmp_path)  # ./compare holds the first comparison
    refused(done, "--out 'compare' already exists", "--force")
    assert run_cli("compare", str(run), str(runs / "second"), "--force", cwd=tmp_path).returncode == 0


def test_the_api_speaks_python(run, chinese_run, tmp_path):
    assert issubclass(ft.UserError, ValueError) and issubclass(ft.UnknownKeyword, TypeError)
    with pytest.raises(ft.UnknownKeyword, match=r"ft.evaluate\(\) has no keyword no_figure=; did you mean no_figures="):
        ft.evaluate(run, no_figure=True)
    out = ft.evaluate(run, no_figures=True, quiet=True, log=lambda *_: None)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["figures"] is False and not list(out.glob("*.png"))
    with pytest.raises(ft.UserError) as error:
        ft.train(chinese_run[1], epochs="1")
    assert "epochs=" in str(error.value) and "--epochs" not in str(error.value)
    with pytest.raises(ft.UserError, match="out= is for the command line only"):
        ft.check(chinese_run[1], out="x.csv")
    # numpy pictures, one and a batch, give what the same pictures give as PIL images
    classifier = ft.load(run)
    photos = [
        Image.open(path).convert("RGB").resize((80, 60)) for path in sorted((chinese_run[1] / "鱼").iterdir())[:2]
    ]
    arrays = np.stack([np.asarray(photo) for photo in photos])
    single = classifier.predict(arrays[0])
    assert single.topk == classifier.predict(photos[0]).topk
    assert [p.topk for p in classifier.predict(arrays)] == [p.topk for p in classifier.predict(photos)]
    with pytest.raises(ft.UserError, match="must hold uint8"):
        classifier.predict(arrays[0].astype(np.float32))
    with pytest.raises(ft.UserError, match="transpose it"):
        classifier.predict(np.ascontiguousarray(arrays[0].transpose(2, 0, 1)))
    # what predict cannot take is named, with what it takes, not a Python error from deep inside
    takes = re.escape("predict takes a path, a folder, a PIL image, a uint8 numpy array")
    for wrong, name in ((None, "NoneType"), (42, "int"), ({"a": 1}, "dict")):
        with pytest.raises(ft.UserError, match=f"^{takes} .*; got {name}\\.$"):
            classifier.predict(wrong)
    with pytest.raises(ft.UserError, match=r"not the bytes of a file: open them first"):
        classifier.predict(sorted((chinese_run[1] / "鱼").iterdir())[0].read_bytes())
    with pytest.raises(ft.UserError, match=r"^predict takes .*; got int\.$"):
        classifier.predict([arrays[0], 7])
    with pytest.raises(ft.UserError, match=re.escape("at least one image of 1x1 pixels; got shape (0, 0, 3)")):
        classifier.predict(np.zeros((0, 0, 3), np.uint8))
    for function in (ft.train, ft.lr_find):  # open-ended: their keywords are the run's settings
        with pytest.raises(ft.UnknownKeyword, match=r"unknown setting 'epoch'; did you mean 'epochs'\?") as caught:
            function(chinese_run[1], epoch=1)
        assert isinstance(caught.value, TypeError)
    with pytest.raises(ft.UnknownKeyword, match=r"^ft.load\(\) has no keyword devcie=; did you mean device=\?$"):
        ft.load(run, devcie="cpu")
    with pytest.raises(ft.UnknownKeyword, match=r"^Classifier.predict\(\) has no keyword top_k=; did you mean topk="):
        classifier.predict(photos[0], top_k=2)
    with pytest.raises(ft.UserError, match=r"^ft.load takes a run folder or a checkpoint file, as a str or a pathlib"):
        ft.load(5)
    with pytest.raises(ft.UserError, match=r"^ft.evaluate takes .*; got int\.$"):
        ft.evaluate(5)
    with pytest.raises(ft.UserError, match=r"^ft.check takes .*; got NoneType\.$"):
        ft.check(None)
    with pytest.raises(ft.UserError, match=r"^ft.check\(\)'s labels= is True or False; got 'no'\.$"):
        ft.check(chinese_run[1], labels="no")
    with pytest.raises(ft.UserError, match=r"^ft.evaluate\(\)'s no_figures= is True or False; got 'yes'\.$"):
        ft.evaluate(run, no_figures="yes")  # a flag's keyword
    with pytest.raises(ft.UserError, match=re.escape("at least 1x1 pixels; got a PIL image of 0x0.")):
        classifier.predict(Image.new("RGB", (0, 0)))
    with pytest.raises(ft.UserError, match=f"^{takes} .*, not a torch tensor: pass the picture itself"):
        classifier.predict(torch.zeros(3, 64, 64))


def test_every_api_function_takes_its_commands_flags():
    from foldertune.api import accepted_keywords
    from foldertune.cli import RESUME_FLAGS, build_parser

    commands = build_parser().commands
    for name in ["train", "resume", "evaluate", "explain", "plot", "compare", "report", "check", "export"]:
        function = getattr(ft, name)
        options = [o for a in commands[function.command]._actions for o in a.option_strings if o.startswith("--")]
        flags = {o[2:].replace("-", "_") for o in options} - {"help"}
        expected = (flags & RESUME_FLAGS if name == "resume" else flags) - set(function.cli_only)
        assert expected <= accepted_keywords(function), (name, expected - accepted_keywords(function))
    with pytest.raises(ft.UnknownKeyword, match=r"ft.resume\(\) has no keyword lr="):
        ft.resume("runs/x", lr=0.1)


def test_one_overwrite_policy_and_nothing_left_behind(run, tmp_path, chinese_run):
    photo = str(sorted((chinese_run[1] / "鱼").iterdir())[0])
    done = run_cli("explain", str(run), photo, "--class", "nosuch", "--out", str(tmp_path / "cams_x"))
    refused(done, "--class 'nosuch' is not one of the model's classes")
    assert not (tmp_path / "cams_x").exists()
    preds = tmp_path / "preds.json"
    assert run_cli("predict", str(run), photo, "--out", str(preds), "--quiet").returncode == 0
    before = preds.read_bytes()
    refused(run_cli("predict", str(run), photo, "--out", str(preds)), f"--out '{preds}' already exists", "--force")
    assert preds.read_bytes() == before
    assert run_cli("predict", str(run), photo, "--out", str(preds), "--force", "--quiet").returncode == 0
    records = json.loads(preds.read_text(encoding="utf-8"))
    assert set(records[0]) == {"path", "label", "probability", "top_label", "unknown_score", "error", "topk"}
    assert set(records[0]["topk"][0]) == {"label", "probability"}
