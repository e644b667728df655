"""foldertune against the tutorial's loop, side by side on this machine: time, throughput, memory, accuracy.

    python bench/speed.py                  # 10-14 minutes on a 2-core CPU; prints a line per case, then a table
    python bench/speed.py --quick          # mobilenet_v2 only, fewer phone photos: about 8 minutes
    python bench/speed.py --all            # every case for both backbones: about 20 minutes
    python bench/speed.py --json out.json  # also keep every measurement
    python bench/speed.py --peer           # mobilenet_v2's fine-tune against timm, the bare step, memory: 3 minutes

Data: (a) the bundled sample (110 training, 28 validation photos, about 320x240) and (b) phone-size copies of
some of them, 4000x3000 JPEGs, written to a temporary folder. Both sides read the same train/ and val/ folders,
train the same backbone from the same weights file, with the same epochs, batch size (32) and worker count.
Each run is a fresh process; its wall time includes start-up, and its peak memory is the largest sum of
proportional set sizes (resident memory, shared pages split between sharers) over the process and its loader
workers, taken whenever their resident total (sampled every 0.1 s) reaches a new high.

Cases (see `plan`): full fine-tune and linear mode at 224 px; prediction on the folder; one pass of the training
loader alone (data loading speed); the model's pure compute throughput (training steps on random tensors already
in memory, same batch and precision) against foldertune's training speed; and memory after each of 10 epochs.
The tutorial side is bench/tutorial_loop.py. resnet18's ImageNet weights cannot be downloaded here, so when they
are not in the torch hub cache both sides start resnet18 from the same random weights: its speed figures hold,
its accuracies do not mean anything.

The best peer: when timm is installed, mobilenet_v2's fine-tune on the sample also runs timm's training pipeline as
its train.py assembles it (bench/timm_loop.py: mobilenetv2_100 from the same ImageNet weights converted to timm's
names, bf16 autocast, channels_last, same split, batch and workers), printed in a third column, and the bare model
step (forward, backward and optimizer on random tensors, same batch and precision: the mean of 12 steps after two)
is measured in the same run, twice in turns: for the network as torchvision builds it and as foldertune trains it
(models/depthwise.py swaps in a faster backward for depthwise layers in bf16 on the CPU). --peer ends with
the targets against the peer: foldertune >= 1.15x timm's training images/s, >= 0.9x each of the two bare steps,
peak memory <= timm's.
Training images/s of a fine-tune is the mean over its epochs after the first (start-up); --peer trains 5 epochs
(--peer-epochs), so that the steady window is 4 epochs rather than one of 3-4 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHONE_SIZE = (4000, 3000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mobilenet_v2 only, 30 phone photos")
    parser.add_argument("--all", action="store_true", help="every case for every backbone (about 20 minutes)")
    parser.add_argument("--peer", action="store_true", help="only the fine-tune against timm, the bare step, memory")
    parser.add_argument("--peer-epochs", type=int, default=5, help="--peer's fine-tune epochs (the first is start-up)")
    parser.add_argument("--models", nargs="+", default=None, help="backbones (default: mobilenet_v2 resnet18)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers for both (default: foldertune's)")
    parser.add_argument("--json", type=Path, help="write every measurement here too")
    parser.add_argument("task", nargs="*", help=argparse.SUPPRESS)  # internal: one measurement in a subprocess
    args = parser.parse_args()
    if args.task:
        print(json.dumps(MEASURE[args.task[0]](*args.task[1:])))
        return

    from foldertune.device import cpu_name
    from foldertune.training.loaders import default_workers

    models = args.models or (["mobilenet_v2"] if args.quick or args.peer else ["mobilenet_v2", "resnet18"])
    workers = default_workers() if args.workers is None else args.workers
    import torch

    machine = (f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {platform.python_version()}, "
               f"loader workers {workers}")  # fmt: skip
    print(f"machine: {machine}\n", flush=True)
    started = time.perf_counter()
    results: dict = {"machine": machine, "rows": []}
    with tempfile.TemporaryDirectory(prefix="foldertune-bench-") as temporary:
        base = Path(temporary)
        datasets = {"sample": make_sample(base / "sample")}
        if not args.peer:
            datasets["phone"] = make_phone(base / "phone", 6 if args.quick else 12)
        weights = {model: save_weights(model, base / f"{model}.pth") for model in models}
        cases = plan(models, everything=args.all)
        if args.peer:  # a steady window of --peer-epochs - 1 epochs for the three sides
            cases = [(kind, name, model, mode, args.peer_epochs if kind == "train" else epochs)
                     for kind, name, model, mode, epochs in cases if (kind, name) in (("train", "sample"),
                     ("compute", "sample")) and model == "mobilenet_v2" and mode in ("finetune", "")]  # fmt: skip
        for kind, name, model, mode, epochs in cases:
            data = datasets[name]
            if kind == "train":
                row = compare_training(base, data, name, model, mode, epochs, weights[model], workers)
            elif kind == "predict":
                row = compare_predict(results["rows"], data, name, model, workers)
            elif kind == "compute":
                row = compare_compute(results["rows"], model)
            else:
                row = compare_loading(data, name, workers)
            results["rows"].append(row)
            print_row(row)
        if not args.peer:
            memory = run_measured([sys.executable, __file__, "memory", str(datasets["sample"]),
                                   weights[models[0]][0], str(base / "memory"), str(workers)])  # fmt: skip
            results["memory"] = memory
            print(f"\nmemory (PSS of the process and its workers) after each of 10 epochs, fine-tuning {models[0]} "
                  f"at {MEMORY_IMG_SIZE} px, MB: {' '.join(f'{mb:.0f}' for mb in memory['rss_mb'])}")  # fmt: skip
    results["seconds"] = time.perf_counter() - started
    results["load_average"] = os.getloadavg()
    print(f"\nload average at the end (1, 5, 15 minutes): {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("\n" + markdown_table(results["rows"]))
    targets = peer_targets(results["rows"])
    if targets:
        print("\ntargets against the best peer, on this machine:\n" + "\n".join(targets))
    print(f"\nbench took {results['seconds'] / 60:.1f} minutes")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


# ------------------------------------------------------------------------------------------------ the cases

MEMORY_IMG_SIZE = 112  # the 10-epoch memory run trains at this size to stay short
BARE_STEPS = 12  # the bare step's timed steps, after two: about as many as the steady epochs of --peer train


def plan(models: list[str], *, everything: bool) -> list[tuple[str, str, str, str, int]]:
    """(kind, data, model, mode, epochs) in run order. By default every target is measured once: the tutorial's
    20-epoch linear runs alone take 3.5 minutes a backbone here, so resnet18 gets the fine-tune and compute cases
    and the data-path cases (phone photos, prediction) run with the first model only; --all runs every one."""
    first = models[0]
    cases = []
    for model in models:
        full = everything or model == first
        cases.append(("train", "sample", model, "finetune", 2))
        if full:
            cases += [("train", "sample", model, "linear", 20), ("train", "phone", model, "finetune", 1),
                      ("train", "phone", model, "linear", 1), ("predict", "sample", model, "", 0),
                      ("predict", "phone", model, "", 0)]  # fmt: skip
        cases.append(("compute", "sample", model, "", 0))
    return [*cases, ("load", "sample", "", "", 0), ("load", "phone", "", "", 0)]


def compare_training(base, data, name, model, mode, epochs, weights, workers) -> dict:
    weights_file, origin = weights
    out = base / "runs" / f"{name}-{model}-{mode}"
    out.mkdir(parents=True)
    tutorial = run_measured([sys.executable, str(HERE / "tutorial_loop.py"), "train", str(data), "--model", model,
                             "--mode", mode, "--epochs", str(epochs), "--workers", str(workers), "--weights",
                             weights_file, "--out", str(out)])  # fmt: skip
    peer = None
    if model == "mobilenet_v2" and mode == "finetune" and name == "sample" and timm_installed():
        peer = run_measured([sys.executable, str(HERE / "timm_loop.py"), str(data), "--weights",
                             timm_weights(weights_file, base), "--epochs", str(epochs), "--workers", str(workers),
                             "--out", str(out)])  # fmt: skip
    ours = run_measured([sys.executable, "-m", "foldertune", "train", str(data), "--model", model, "--mode", mode,
                         "--epochs", str(epochs), "--batch-size", "32", "--workers", str(workers), "--weights",
                         weights_file, "--no-report", "--quiet", "--project", str(out), "--name", "foldertune",
                         "--cache-dir", str(out / "cache")])  # fmt: skip
    run = out / "foldertune"
    epochs_csv = read_csv(run / "epochs.csv")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    images = sum(float(row["images_per_s"]) * float(row["seconds"]) for row in epochs_csv)
    if mode == "linear":  # the head's epochs take milliseconds: count the whole run, both sides alike
        train_rate = (images / ours["wall"], tutorial["train_images"] * epochs / tutorial["wall"])
    else:  # steady speed: the epochs after the first one's start-up (worker processes, kernel set-up)
        train_rate = (steady([float(row["images_per_s"]) for row in epochs_csv]), steady(tutorial["epoch_img_s"]))
    row = {
        "case": f"{mode}, {epochs} epochs", "data": name, "model": f"{model} ({origin})",
        "wall_s": (ours["wall"], tutorial["wall"]), "train_img_s": train_rate,
        "peak_mb": (ours["peak_mb"], tutorial["peak_mb"]), "val_acc": (metrics["val"]["accuracy"], tutorial["val_acc"]),
        "run": str(run), "tutorial_weights": str(out / f"best-{model}.pth"),
    }  # fmt: skip
    if peer is not None:  # its steady images/s, as for foldertune
        row["timm"] = {"wall_s": peer["wall"], "train_img_s": steady(peer["epoch_img_s"]), "peak_mb": peer["peak_mb"],
                       "val_acc": peer["val_acc"]}  # fmt: skip
    return row


def steady(per_epoch: list[float]) -> float:
    """Training images/s once started: the mean over every epoch after the first (the only epoch of a 1-epoch run)."""
    later = per_epoch[1:] or per_epoch
    return sum(later) / len(later)


def timm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("timm") is not None


def timm_weights(weights_file: str, base: Path) -> str:
    """torchvision's mobilenet_v2 weights in timm's mobilenetv2_100 names (models/convert.py), as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    from foldertune.models.convert import convert_by_position

    path = base / "mobilenetv2_100.safetensors"
    if not path.exists():
        state = torch.load(weights_file, weights_only=True)
        save_file(convert_by_position(state, timm.create_model("mobilenetv2_100")), str(path))
    return str(path)


def compare_predict(done: list[dict], data, name, model, workers) -> dict:
    """Both sides predict every image of the folder with the weights their own fine-tuning run saved."""
    rows = [row for row in done if "run" in row and row["data"] == name and row["model"].startswith(model + " ")]
    finetuned = next(row for row in rows if row["case"].startswith("finetune"))
    classes = len([p for p in (data / "train").iterdir() if p.is_dir()])
    tutorial = run_measured([sys.executable, str(HERE / "tutorial_loop.py"), "predict", str(data), "--model", model,
                             "--weights", finetuned["tutorial_weights"], "--classes", str(classes), "--workers",
                             str(workers)])  # fmt: skip
    ours = run_measured([sys.executable, __file__, "predict", finetuned["run"], str(data)])
    return {
        "case": f"predict {tutorial['images']} images", "data": name, "model": model,
        "wall_s": (ours["wall"], tutorial["wall"]), "predict_img_s": (ours["predict_img_s"], tutorial["predict_img_s"]),
        "peak_mb": (ours["peak_mb"], tutorial["peak_mb"]),
    }  # fmt: skip


def compare_loading(data, name, workers) -> dict:
    tutorial = run_measured([sys.executable, str(HERE / "tutorial_loop.py"), "load", str(data), "--workers",
                             str(workers)])  # fmt: skip
    ours = run_measured([sys.executable, __file__, "load", str(data), str(workers)])
    return {
        "case": "training loader alone, 1 epoch", "data": name, "model": "-",
        "load_img_s": (ours["load_img_s"], tutorial["load_img_s"]), "peak_mb": (ours["peak_mb"], tutorial["peak_mb"]),
    }  # fmt: skip


def compare_compute(done: list[dict], model) -> dict:
    """foldertune's steady training images/s against the bare step: of the network as torchvision builds it, and of
    the network as foldertune trains it (the pipeline's own share of the time)."""
    compute = run_measured([sys.executable, __file__, "compute", model])
    finetuned = next(row for row in done if "run" in row and row["data"] == "sample"
                     and row["model"].startswith(model + " ") and row["case"].startswith("finetune"))  # fmt: skip
    ours = finetuned["train_img_s"][0]
    note = (f"bare step {compute['compute_img_s']:.1f} as torchvision builds it, {compute['compute_ours_img_s']:.1f} "
            f"as foldertune trains it ({compute['swapped']} depthwise layers swapped): pipeline "
            f"{ours / compute['compute_ours_img_s']:.2f}x of its own network's bare step")  # fmt: skip
    row = {
        "case": "fine-tune training vs pure compute", "data": "sample", "model": model,
        "train_img_s": (ours, compute["compute_img_s"]), "bare_ours_img_s": compute["compute_ours_img_s"],
        "note": note,
    }  # fmt: skip
    if "timm" in finetuned:
        row["timm"] = {"train_img_s": finetuned["timm"]["train_img_s"]}
    return row


def peer_targets(rows: list[dict]) -> list[str]:
    """The targets against the best peer (speed against timm and the bare step, memory), each with its figures and
    whether it is met."""
    trained = next((row for row in rows if "timm" in row and "wall_s" in row), None)
    compute = next((row for row in rows if "bare_ours_img_s" in row), None)
    if trained is None or compute is None:
        return []
    ours, timm = trained["train_img_s"][0], trained["timm"]["train_img_s"]
    plain, own = compute["train_img_s"][1], compute["bare_ours_img_s"]
    peak, timm_peak = trained["peak_mb"][0], trained["timm"]["peak_mb"]
    checks = [
        (f"training images/s >= 1.15x timm's: {ours:.1f} / {timm:.1f} = {ours / timm:.3f}x", ours >= 1.15 * timm),
        (f"training images/s >= 0.9x the bare step of the network as torchvision builds it: {ours:.1f} / {plain:.1f} "
         f"= {ours / plain:.3f}x", ours >= 0.9 * plain),
        (f"training images/s >= 0.9x the bare step of the network as foldertune trains it (the loop's own overhead): "
         f"{ours:.1f} / {own:.1f} = {ours / own:.3f}x", ours >= 0.9 * own),
        (f"peak PSS <= timm's: {peak:.0f} MB / {timm_peak:.0f} MB = {peak / timm_peak:.2f}x", peak <= timm_peak),
    ]  # fmt: skip
    return [f"{'met' if met else 'NOT met'}: {text}" for text, met in checks]


def print_row(row: dict) -> None:
    parts = [f"{row['data']:<6} {row['model']:<24} {row['case']:<34}"]
    for key in ("wall_s", "train_img_s", "predict_img_s", "load_img_s", "peak_mb", "val_acc"):
        if key in row:
            ours, theirs = row[key]
            ratio = theirs / ours if key in ("wall_s", "peak_mb") else ours / theirs if theirs else float("nan")
            parts.append(f"{key} {ours:.3g} vs {theirs:.3g} ({ratio:.2f}x)" if key != "val_acc"
                         else f"{key} {ours:.3f} vs {theirs:.3f}")  # fmt: skip
    for key, theirs in row.get("timm", {}).items():
        ours = row[key][0]
        if key == "val_acc":
            parts.append(f"timm {key} {theirs:.3f}")
        else:
            ratio = theirs / ours if key in ("wall_s", "peak_mb") else ours / theirs
            parts.append(f"timm {key} {theirs:.3g} ({ratio:.2f}x)")
    if "note" in row:
        parts.append(row["note"])
    print("  ".join(parts), flush=True)


LABELS = {"wall_s": "wall time, s", "train_img_s": "training images/s", "predict_img_s": "prediction images/s",
          "load_img_s": "loading images/s", "peak_mb": "peak memory, MB", "val_acc": "validation accuracy"}  # fmt: skip


def markdown_table(rows: list[dict]) -> str:
    """One line per case and measurement: foldertune, the tutorial's loop, and the factor in foldertune's favour
    (time and memory: tutorial / foldertune; speeds: foldertune / tutorial); then timm's pipeline where it ran, and
    foldertune's factor against it."""
    lines = ["| data | model | case | measure | foldertune | tutorial | factor | timm | factor |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        for key, label in LABELS.items():
            if key not in row:
                continue
            ours, theirs = row[key]
            tutorial = "pure compute " + _number(theirs) if "note" in row else _number(theirs)
            peer = row.get("timm", {}).get(key)
            against_peer = "| - | - |" if peer is None else f"| {_number(peer)} | {_factor(key, ours, peer)} |"
            lines.append(f"| {row['data']} | {row['model']} | {row['case']} | {label} | {_number(ours)} | {tutorial} "
                         f"| {_factor(key, ours, theirs)} {against_peer}")  # fmt: skip
    return "\n".join(lines)


def _factor(key: str, ours: float, theirs: float) -> str:
    if key == "val_acc":
        return f"{ours - theirs:+.3f}"
    return f"{(theirs / ours if key in ('wall_s', 'peak_mb') else ours / theirs):.2f}x"


def _number(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


# ----------------------------------------------------------------------------------- data, weights, processes


def make_sample(target: Path) -> Path:
    """The bundled sample split as foldertune splits it (seed 0), as train/ and val/ class folders."""
    from foldertune.data import sample_data_path

    subprocess.run([sys.executable, "-m", "foldertune", "split", str(sample_data_path()), "--out", str(target),
                    "--manifest", str(target.parent / f"{target.name}-split.csv"), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return target


def make_phone(target: Path, per_class: int) -> Path:
    """`per_class` photos per class of the sample split, upscaled to 4000x3000 (or 3000x4000) JPEGs, quality 90."""
    from PIL import Image

    source = make_sample(target.parent / "phone-source")
    for split in ("train", "val"):
        for folder in sorted((source / split).iterdir()):
            files = sorted(folder.iterdir())[: per_class if split == "train" else max(1, per_class // 4)]
            (target / split / folder.name).mkdir(parents=True, exist_ok=True)
            for file in files:
                image = Image.open(file).convert("RGB")
                size = PHONE_SIZE if image.width >= image.height else PHONE_SIZE[::-1]
                image.resize(size, Image.Resampling.BICUBIC).save(target / split / folder.name / f"{file.stem}.jpg",
                                                                  quality=90)  # fmt: skip
    shutil.rmtree(source)
    return target


def save_weights(model: str, path: Path) -> tuple[str, str]:
    """The ImageNet weights when this machine has them, else a seeded random initialisation; as a state_dict file."""
    import torch

    from foldertune.errors import UserError
    from foldertune.models.registry import get_backbone
    from foldertune.models.weights import resolve_weights

    try:
        state_dict, _ = resolve_weights(get_backbone(model), log=lambda *_: None)
        origin = "ImageNet"
    except UserError:
        torch.manual_seed(0)
        state_dict, origin = get_backbone(model).build().state_dict(), "random init"
    torch.save(state_dict, path)
    return str(path), origin


def run_measured(command: list[str]) -> dict:
    """Run `command`; its last stdout line (JSON) plus wall seconds and peak resident MB of its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def watch() -> None:
        """Resident memory of the tree every 0.1 s (cheap); its PSS (a walk of every page table: about 60 ms of CPU
        for a 2 GB training process, which sampled every 0.1 s slowed foldertune's training by a quarter) only when
        the resident total reaches a new high."""
        highest = 0.0
        while process.poll() is None:
            pids = tree_pids(process.pid)
            resident = sum(resident_mb(pid) for pid in pids)
            if resident > highest * 1.01:
                highest = resident
                peak[0] = max(peak[0], sum(pss_mb(pid) for pid in pids))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    watcher.join()
    if process.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{stderr[-3000:]}")
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    return {**(json.loads(lines[-1]) if lines else {}), "wall": wall, "peak_mb": peak[0]}


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def resident_mb(pid: int) -> float:
    """Resident memory of one process in MB (shared pages counted in full)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size of one process in MB: pages shared with its loader workers are split between them, so
    the tree's sum counts them once."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        return int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


def read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- measurements run inside a fresh subprocess


def measure_predict(run: str, data: str) -> dict:
    from foldertune.data.scan import list_image_files
    from foldertune.inference.classifier import Classifier

    classifier = Classifier.from_path(run)
    files, _ = list_image_files([data])
    started = time.perf_counter()
    predictions = classifier.predict_files(files, progress=False)
    return {"predict_img_s": len(predictions) / (time.perf_counter() - started)}


def measure_loading(data: str, workers: str) -> dict:
    from foldertune.config import RunConfig
    from foldertune.device import choose_runtime
    from foldertune.models.registry import get_backbone
    from foldertune.training.loaders import build_loaders
    from foldertune.training.prepare import prepare_data

    cfg = RunConfig.from_flat(data=data, workers=int(workers), batch_size=32)
    prepared = prepare_data(cfg.data, seed=0, progress=False)
    loader = build_loaders(prepared, get_backbone("mobilenet_v2").preprocessing, cfg, choose_runtime("cpu", "fp32"))
    loader = loader["train"]
    loader.batch_sampler.set_epoch(1)
    started = time.perf_counter()
    count = sum(len(labels) for _, labels in loader)
    return {"load_img_s": count / (time.perf_counter() - started)}


def measure_compute(model: str) -> dict:
    """The bare step of the network as torchvision builds it, and of the network as foldertune trains it
    (models/depthwise.py: bf16 on the CPU), in turns of BARE_STEPS / 3 steps so that both see the same machine."""
    import copy

    import torch

    from foldertune.device import choose_runtime
    from foldertune.models.build import build_model
    from foldertune.models.depthwise import use_fast_depthwise

    runtime = choose_runtime("cpu", "auto")
    plain = build_model(model, 5).to(memory_format=torch.channels_last if runtime.channels_last else None).train()
    ours = copy.deepcopy(plain)
    swapped = use_fast_depthwise(ours, runtime)
    inputs = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 5, (32,))
    optimizers = {network: torch.optim.AdamW(network.parameters(), lr=1e-4) for network in (plain, ours)}

    def step(network) -> None:
        with runtime.autocast():
            loss = torch.nn.functional.cross_entropy(network(inputs).float(), targets)
        optimizers[network].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[network].step()

    seconds = {plain: 0.0, ours: 0.0}
    for network in (plain, ours, plain, ours):
        step(network)
    for _ in range(3):
        for network in (plain, ours):
            started = time.perf_counter()
            for _ in range(BARE_STEPS // 3):
                step(network)
            seconds[network] += time.perf_counter() - started
    steps = BARE_STEPS // 3 * 3 * 32
    return {"compute_img_s": steps / seconds[plain], "compute_ours_img_s": steps / seconds[ours], "swapped": swapped}


def measure_memory(data: str, weights: str, project: str, workers: str) -> dict:
    """Resident memory of this process and its loader workers after each of 10 fine-tuning epochs."""
    from foldertune.config import RunConfig
    from foldertune.training.fit import fit

    rss = []

    def log(line: str) -> None:
        if line.startswith("epoch "):
            rss.append(sum(pss_mb(pid) for pid in tree_pids(os.getpid())))

    cfg = RunConfig.from_flat(data=data, weights=weights, epochs=10, workers=int(workers), project=project,
                              img_size=MEMORY_IMG_SIZE, report=False)  # fmt: skip
    fit(cfg, quiet=True, log=log)
    return {"rss_mb": rss}


MEASURE = {"predict": measure_predict, "load": measure_loading, "compute": measure_compute, "memory": measure_memory}


if __name__ == "__main__":
    main()
