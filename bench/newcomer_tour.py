"""A newcomer's tour: 56 wrong invocations of the command line, each run as a real process, printed as a table.

    python bench/newcomer_tour.py [--keep DIR]

Every mistake a new user makes in the first hour (a missing folder, a typo in a flag, a folder laid out wrongly, a
port in use, an output path that cannot be written) should end in exit status 2 and one sentence on stderr that
names the file or flag and how to fix it: no traceback, no library warnings. The tour builds a small playground (a
32-image copy of the bundled sample, a flat folder, an empty one, a run trained for one epoch from random weights)
and prints, per invocation: the exit status, the number of lines on stderr and the first of them. It exits 1 when
any invocation ends otherwise, naming each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from foldertune.data import sample_data_path

TIMEOUT = 180


def build_playground(root: Path) -> None:
    """The folders and files the invocations below refer to, with paths relative to `root`."""
    sample = sample_data_path()
    classes = sorted(d for d in sample.iterdir() if d.is_dir())
    for folder in classes:
        (root / "data" / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:6]:
            shutil.copy(photo, root / "data" / folder.name / photo.name)
    (root / "flat").mkdir()
    for photo in sorted(classes[0].iterdir())[:15]:
        shutil.copy(photo, root / "flat" / photo.name)
    (root / "empty").mkdir()
    shutil.copytree(root / "data" / classes[0].name, root / "oneclass" / classes[0].name)
    (root / "noimgs").mkdir()
    (root / "noimgs" / "notes.txt").write_text("no pictures here\n")
    for split in ("train", "val"):
        for folder in classes[:2]:
            shutil.copytree(root / "data" / folder.name, root / "presplit" / split / folder.name)
    (root / "fake.pt").write_text("this is a text file, not a checkpoint\n")
    (root / "notes.txt").write_text("hello\n")
    train = [
        sys.executable, "-m", "foldertune", "train", "data", "--epochs", "1", "--img-size", "64", "--batch-size", "8",
        "--workers", "0", "--precision", "fp32", "--no-pretrained", "--quiet", "--project", "runs", "--name", "a",
    ]  # fmt: skip
    subprocess.run(train, cwd=root, check=True, capture_output=True, timeout=TIMEOUT)


def invocations(photo: str, port: int) -> list[list[str]]:
    """Each a list of arguments to `foldertune`, run in the playground."""
    return [
        ["trian", "data"],
        ["train", "nosuch/"],
        ["train", "data", "--epoch", "3"],
        ["train", "data", "--epochs", "0"],
        ["train", "data", "--epochs", "x"],
        ["train", "data", "--lr", "-1"],
        ["train", "data", "--model", "nosuchnet"],
        ["train", "data", "--model", "resnet18"],
        ["train", "data", "--name", "../escape"],
        ["train", "data", "--name", "a", "--project", "runs"],
        ["train", "data", "--resume", "runs/nope"],
        ["train", "data", "--val", "0"],
        ["train", "data", "--val", "1.5"],
        ["train", "--resume", "runs/nope"],
        ["train", "flat"],
        ["train", "empty"],
        ["train", "oneclass"],
        ["train", "data", "--weights", "fake.pt"],
        ["train", "--manifest", "nosuch.csv"],
        ["train", "--resume", "runs/a", "--lr", "0.1"],
        ["check", "nosuch/"],
        ["check", "flat"],
        ["check", "empty"],
        ["check", "oneclass"],
        ["check", "data", "--out", "data/check.csv"],
        ["check", "--restore", "nosuch/"],
        ["split", "data", "--val", "2"],
        ["split", "presplit"],
        ["predict", "runs/a"],
        ["predict", "runs/a", "noimgs"],
        ["predict", "runs/a", "nosuch.jpg"],
        ["predict", "runs/nope", "data"],
        ["predict", "fake.pt", "data"],
        ["predict", "runs/a", "data", "--topk", "0"],
        ["predict", "runs/a", "data", "--out", "preds.txt"],
        ["predict", "runs/a", "data", "--out", "/proc/preds.csv"],
        ["predict", "notes.txt", "data"],
        ["export", "runs/a", "--out", "/proc/model.onnx"],
        ["export", "runs/a", "--out", f"{photo}/model.onnx"],
        ["export", "runs/nope"],
        ["export", "runs/a", "--opset", "3"],
        ["serve", "runs/a", "--port", str(port)],
        ["serve", "runs/a", "--port", "99999"],
        ["evaluate", "runs/a", "nosuch/"],
        ["evaluate", "runs/a", "--split", "test"],
        ["evaluate", "runs/a", "flat"],
        ["evaluate", "runs/a", "--out", "/proc/eval"],
        ["explain", "runs/a", photo, "--class", "nosuch", "--out", "cams_x"],
        ["explain", "runs/a", "nosuch.jpg"],
        ["plot", "runs/nope"],
        ["plot", "runs/a", "--format", "bmp"],
        ["compare", "runs/a"],
        ["compare", "runs/a", "runs/nope"],
        ["compare", "runs/a", "runs/a", "--out", "notes.txt"],
        ["report", "runs/nope"],
        ["report", "notes.txt"],
    ]


def run_one(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # show every warning a library would show a user
    done = subprocess.run([sys.executable, "-m", "foldertune", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)  # fmt: skip
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--keep", metavar="DIR", help="build the playground in DIR and keep it (default: a temp dir)")
    options = parser.parse_args()
    root = Path(options.keep) if options.keep else Path(tempfile.mkdtemp(prefix="foldertune-tour-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_playground(root)
    photo = str(sorted(p for p in (root / "data").rglob("*") if p.is_file())[0].relative_to(root))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    failures = []
    print(f"{'exit':>4}  {'lines':>5}  command / first line of stderr")
    for args in invocations(photo, busy.getsockname()[1]):
        code, lines = run_one(args, root)
        ok = code == 2 and len(lines) == 1 and not any("Traceback" in line for line in lines)
        print(f"{code:>4}  {len(lines):>5}  foldertune {' '.join(args)}\n{'':>13}{lines[0] if lines else '(nothing)'}")
        if not ok:
            failures.append((args, code, lines))
    busy.close()
    left = sorted(p.name for p in root.iterdir()) if (root / "cams_x").exists() else []
    if left:
        failures.append((["explain", "..."], 0, ["left an output folder behind: cams_x"]))
    total = len(invocations(photo, 0))
    print(f"\n{total - len(failures)} of {total} invocations ended in exit 2 with one line "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    for args, code, lines in failures:
        print(f"NOT CLEAN: foldertune {' '.join(args)} -> exit {code}, {len(lines)} lines:")
        for line in lines[-8:]:
            print(f"    {line}")
    if not options.keep:
        shutil.rmtree(root, ignore_errors=True)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
