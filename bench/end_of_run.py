"""What the end of a run costs: the final evaluation, figures and report against a one-epoch fine-tune.

    python bench/end_of_run.py                            # this checkout: about 3 minutes on a 2-core CPU
    python bench/end_of_run.py --against ../before/src   # and another source tree, side by side (before / after)
    python bench/end_of_run.py --repeat 2                 # each run twice (the machine is shared: take the best)

Cases: (a) the bundled sample as it is (110 training, 28 validation photos); (b) the sample pre-split into 39
training and 100 validation photos; (c) phone-size photos: the sample's first 20 photos of each class enlarged to
4000x3000 JPEGs (94 photos, the default split); (d) where Debian's `dataset-fashion-mnist` is installed, 500
Fashion-MNIST images (50 a class) split as `train` splits by default: 400 for training, 100 for validation, which
is what a folder with 100 validation images usually looks like (the unknown_score reference, one pass over the
training images, grows with it). Each run is `foldertune train DATA --epochs 1 --verbose` in a fresh process, with
a cache folder of its own (every file is read afresh before training), from the ImageNet weights of mobilenet_v2
in the torch hub cache, else from random weights (the timings hold either way).
The end of the run is timed from the moment it prints "best.pt (epoch" to the process's exit, so a source tree
without --verbose is measured the same way; a tree with it also prints where that time went (config.json's
"end_of_run"). Targets: at most 5 s, and at most a quarter of the one-epoch run on the sample. The CPU seconds of
the end (the process and its loader workers) are printed too: on a shared machine they move less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_check import FASHION, fashion_folder

TARGET_SECONDS = 5.0
TARGET_SHARE = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another source tree (its src/ folder) to time the same way")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case and tree; the fastest end counts")
    args = parser.parse_args()

    from foldertune.data import sample_data_path
    from foldertune.device import cpu_name

    here = Path(__file__).resolve().parent.parent / "src"
    trees = {"this": here, **({"against": args.against.resolve()} if args.against else {})}
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="foldertune-end-") as temporary:
        base = Path(temporary)
        cases = {"sample (28 val)": sample_data_path(), "100 val": hundred_val(base / "hundred", sample_data_path())}
        cases["phone-size JPEGs"] = phone_size(base / "phone", sample_data_path())
        if (FASHION / "train-images-idx3-ubyte.gz").exists():
            cases["Fashion-MNIST 400 + 100 val"] = fashion_folder(base / "fashion", 50)
        else:
            print("Fashion-MNIST is not installed (apt install dataset-fashion-mnist): its case is left out\n")
        results = []
        for case, data in cases.items():
            for name, tree in trees.items():
                runs = [train_once(tree, data, base / f"runs-{name}-{len(results)}-{i}") for i in range(args.repeat)]
                best = min(runs, key=lambda run: run["end"])
                results.append({"case": case, "tree": name, **best})
                share, cpu = best["end"] / best["wall"], best["end_cpu"]
                print(f"{case:<16} {name:<8} run {best['wall']:5.1f} s  end of run {best['end']:5.1f} s "
                      f"({share:.0%} of the run, {cpu:.1f} CPU s)  {best['parts']}", flush=True)  # fmt: skip
    print("\n| case | tree | one-epoch run, s | end of run, s | share | end of run, CPU s | where it went |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    for row in results:
        print(f"| {row['case']} | {row['tree']} | {row['wall']:.1f} | {row['end']:.1f} | "
              f"{row['end'] / row['wall']:.0%} | {row['end_cpu']:.1f} | {row['parts']} |")  # fmt: skip
    ours = [row for row in results if row["tree"] == "this"]
    met = all(row["end"] <= TARGET_SECONDS for row in ours) and all(
        row["end"] <= TARGET_SHARE * row["wall"] for row in ours if row["case"].startswith("sample")
    )
    print(f"\ntargets (end of run <= {TARGET_SECONDS:.0f} s, <= {TARGET_SHARE:.0%} of the sample's one-epoch run): "
          f"{'met' if met else 'NOT met'} on this machine")  # fmt: skip
    for row in ours:
        print(shortfall(row, os.cpu_count() or 1))


def shortfall(row: dict, cores: int) -> str:
    """What a case's end of run is allowed, and the least its CPU seconds can take on this machine's cores."""
    allowed = [TARGET_SECONDS]
    if row["case"].startswith("sample"):  # end <= share x (rest + end)  <=>  end <= rest x share / (1 - share)
        allowed.append((row["wall"] - row["end"]) * TARGET_SHARE / (1 - TARGET_SHARE))
    case, end, cpu = row["case"], row["end"], row["end_cpu"]
    return (f"  {case}: end of run {end:.2f} s, allowed {min(allowed):.2f} s; its {cpu:.1f} CPU s take at least "
            f"{cpu / cores:.2f} s on {cores} cores, however they are arranged")  # fmt: skip


def hundred_val(folder: Path, sample: Path) -> Path:
    """The sample's photos as train/ and val/ folders: 100 for validation (20 a class), the rest for training."""
    for klass in sorted(p for p in sample.iterdir() if p.is_dir()):
        photos = sorted(p for p in klass.iterdir() if p.is_file())
        for i, photo in enumerate(photos):
            target = folder / ("val" if i < 20 else "train") / klass.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, target / photo.name)
    return folder


def phone_size(folder: Path, sample: Path, per_class: int = 20) -> Path:
    """The first `per_class` photos of each class of the sample, enlarged to 4000x3000 (or 3000x4000) JPEGs."""
    from PIL import Image

    for klass in sorted(p for p in sample.iterdir() if p.is_dir()):
        (folder / klass.name).mkdir(parents=True, exist_ok=True)
        for photo in sorted(p for p in klass.iterdir() if p.is_file())[:per_class]:
            with Image.open(photo) as image:
                size = (4000, 3000) if image.width >= image.height else (3000, 4000)
                image.convert("RGB").resize(size, Image.BICUBIC).save(folder / klass.name / f"{photo.stem}.jpg",
                                                                      quality=90)  # fmt: skip
    return folder


def train_once(tree: Path, data: Path, project: Path) -> dict:
    """One `foldertune train --epochs 1` of `tree`: its wall time, the seconds after "best.pt (epoch", the parts."""
    env = {**os.environ, "PYTHONPATH": str(tree), "FOLDERTUNE_CACHE_DIR": str(project / "cache")}
    command = [sys.executable, "-m", "foldertune", "train", str(data), "--epochs", "1", "--quiet", "--verbose",
               "--project", str(project), "--name", "run"]  # fmt: skip
    if not (tree / "foldertune" / "cli.py").read_text(encoding="utf-8").count('"verbose"'):
        command.remove("--verbose")
    if not _pretrained_weights():
        command.append("--no-pretrained")
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end_started, cpu_at_end, lines = None, 0.0, []
    for line in process.stdout:
        lines.append(line)
        if end_started is None and line.startswith("best.pt (epoch"):
            end_started, cpu_at_end = time.perf_counter(), cpu_seconds(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    finished = time.perf_counter()
    if status or end_started is None:
        raise SystemExit(f"train failed ({tree}):\n" + "".join(lines[-20:]))
    config = json.loads((project / "run" / "config.json").read_text(encoding="utf-8"))
    parts = ", ".join(f"{k} {v:.1f}" for k, v in config.get("end_of_run", {}).items() if k != "total") or "-"
    cpu = usage.ru_utime + usage.ru_stime - cpu_at_end
    return {"wall": finished - started, "end": finished - end_started, "end_cpu": cpu, "parts": parts}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its finished children so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _pretrained_weights() -> bool:
    from foldertune.models.registry import get_backbone
    from foldertune.models.weight_files import hub_checkpoint_dir

    return (hub_checkpoint_dir() / get_backbone("mobilenet_v2").weights_file).is_file()


if __name__ == "__main__":
    main()
