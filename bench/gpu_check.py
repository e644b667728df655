"""One short CUDA check: the sample with resnet18 and mobilenet_v2 in fp32 and automatic precision, then the loader.

    python bench/gpu_check.py                 # needs a CUDA GPU; 3-4 minutes on an H200 with 16 cores
    python bench/gpu_check.py --epochs 5 --project /tmp/gpu_runs
    python bench/gpu_check.py --loading-only --device cpu --images 70 --loading-epochs 1   # the paths on a CPU

Prints one row per (backbone, precision): the precision "auto" resolved to, training images/s of the last epoch,
evaluation accuracy of best.pt, and wall time. mobilenet_v2 starts from its ImageNet weights (found as foldertune
always finds them: hub cache, download, package index); resnet18 does too when its torchvision file is in the hub
cache, otherwise it trains from random weights and says so. With two or more GPUs it also trains mobilenet_v2
under `torchrun --nproc_per_node=2` (DDP over NCCL) and adds that row.

Then the loading paths, on a folder big enough to time (--images JPEGs of 500x375, ImageNet's typical size, made
from the sample's photos, each saved at its own quality), fine-tuning mobilenet_v2 at 224 px with automatic
precision, batch 64, 2 epochs: images/s of the second for
- `foldertune train` with the default loader workers (cores - 1, at most 32), and with 8 (the former default);
- `foldertune train --cache ram` (its fill runs before the first epoch: in the wall time only);
- `foldertune train --decode device`: the loader workers only read the files' bytes and draw the crops; the
  training process decodes each batch with `torchvision.io.decode_jpeg(..., device=DEVICE)` (nvjpeg on CUDA) and
  crops it there (data/device_decode.py).
The last line says whether the fastest path reaches the target of 1,500 images/s on one GPU (an H200).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import foldertune as ft
from foldertune.data import sample_data_path
from foldertune.models.registry import get_backbone
from foldertune.models.weights import hub_checkpoint_dir
from foldertune.training.loaders import default_workers

LOADING_BATCH = 64
TARGET_IMAGES_PER_S = 1500  # mobilenet_v2 fine-tuning at 224 px on one H200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--project", default=None, help="where the run folders go (default: a temporary folder)")
    parser.add_argument("--images", type=int, default=4000, help="JPEGs in the loading paths' folder (default 4000)")
    parser.add_argument("--loading-epochs", type=int, default=2, help="epochs of each loading path (default 2)")
    parser.add_argument("--loading-only", action="store_true", help="only the loading paths")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu to try the loading paths without a GPU")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: PyTorch sees no CUDA GPU here.")
    project = Path(args.project or tempfile.mkdtemp(prefix="foldertune-gpu-"))
    if args.device == "cuda":
        print(
            f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; bf16: {torch.cuda.is_bf16_supported()}"
        )
    print(f"{os.cpu_count()} CPU cores; default loader workers with a GPU: {default_workers('cuda')}", flush=True)
    if not args.loading_only:
        precision_rows(project, args.epochs)
    loading_paths(project, args.images, args.loading_epochs, args.device)


def precision_rows(project: Path, epochs: int) -> None:
    """Each backbone in fp32 and in automatic precision on the bundled sample."""
    rows = []
    for model in ("resnet18", "mobilenet_v2"):
        cached = (hub_checkpoint_dir() / get_backbone(model).weights_file).is_file()
        pretrained = model == "mobilenet_v2" or cached
        for precision in ("fp32", "auto"):
            started = time.perf_counter()
            run = ft.train(
                model=model, epochs=epochs, precision=precision, device="cuda", pretrained=pretrained,
                project=project, run_name=f"{model}-{precision}", quiet=True,
            )  # fmt: skip
            wall = time.perf_counter() - started
            config = json.loads((run / "config.json").read_text())
            last_epoch = (run / "epochs.csv").read_text().strip().splitlines()[-1].split(",")
            metrics = json.loads((run / "metrics.json").read_text())
            rows.append(
                (model, "imagenet" if pretrained else "random", precision, config["resolved"]["precision"],
                 float(last_epoch[-1]), metrics["val"]["accuracy"], wall)
            )  # fmt: skip
    if torch.cuda.device_count() >= 2:
        rows.append(distributed_row(project, epochs))
    print(f"\n{'backbone':<14}{'weights':<10}{'asked':<7}{'used':<6}{'train img/s':>12}{'val acc':>9}{'wall s':>8}")
    for model, weights, asked, used, speed, accuracy, wall in rows:
        print(f"{model:<14}{weights:<10}{asked:<7}{used:<6}{speed:>12.0f}{accuracy:>9.3f}{wall:>8.1f}")


def distributed_row(project: Path, epochs: int) -> tuple:
    """mobilenet_v2, automatic precision, two processes on two GPUs through torchrun (NCCL)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "foldertune",
         "train", "--model", "mobilenet_v2", "--epochs", str(epochs), "--device", "cuda", "--quiet",
         "--project", str(project), "--name", "mobilenet_v2-ddp2"],
        check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    run = project / "mobilenet_v2-ddp2"
    config = json.loads((run / "config.json").read_text())
    last_epoch = (run / "epochs.csv").read_text().strip().splitlines()[-1].split(",")
    accuracy = json.loads((run / "metrics.json").read_text())["val"]["accuracy"]
    used = f"{config['resolved']['precision']} x2"
    return ("mobilenet_v2", "imagenet", "auto", used, float(last_epoch[-1]), accuracy, wall)


def loading_paths(project: Path, images: int, epochs: int, device: str) -> None:
    """mobilenet_v2 fine-tuning at 224 px on `images` JPEGs through each loading path; images/s of the last epoch."""
    data = make_jpegs(project / "jpegs", images)
    workers = default_workers(device)
    settings = {"model": "mobilenet_v2", "epochs": epochs, "device": device, "batch_size": LOADING_BATCH,
                "val": 0.05, "project": project, "quiet": True, "report": False}  # fmt: skip
    cases = [(f"foldertune, default workers ({workers})", {"workers": workers}),
             ("foldertune, 8 workers", {"workers": 8}),
             (f"foldertune --cache ram, {workers} workers", {"workers": workers, "cache": "ram"}),
             (f"foldertune --decode device, {workers} workers", {"workers": workers, "decode": "device"})]  # fmt: skip
    print(f"\nloading paths: {images} JPEGs of 500x375, mobilenet_v2 fine-tune at 224 px, batch {LOADING_BATCH}, "
          f"{epochs} epochs on {device}", flush=True)  # fmt: skip
    print(f"{'path':<44}{'img/s (last epoch)':>20}{'first epoch s':>15}{'wall s':>8}")
    speeds = {}
    for number, (name, extra) in enumerate(cases):
        started = time.perf_counter()
        run = ft.train(data, **settings, **extra, run_name=f"loading-{number}")
        wall = time.perf_counter() - started
        rows = [line.split(",") for line in (run / "epochs.csv").read_text().strip().splitlines()[1:]]
        speeds[name] = float(rows[-1][-1])
        print(f"{name:<44}{speeds[name]:>20.0f}{float(rows[0][-2]):>15.1f}{wall:>8.1f}", flush=True)
    fastest = max(speeds, key=speeds.get)
    verdict = "met" if speeds[fastest] >= TARGET_IMAGES_PER_S else "NOT met"
    print(
        f"target: at least {TARGET_IMAGES_PER_S:,} images/s for this fine-tune on one GPU: {verdict} on {device} "
        f"(fastest: {fastest}, {speeds[fastest]:.0f} images/s)"
    )


def make_jpegs(folder: Path, count: int) -> Path:
    """`count` distinct 500x375 JPEGs spread over the sample's classes (in parallel: a few seconds on 16 cores)."""
    photos = sorted(str(p) for p in sample_data_path().rglob("*") if p.suffix.lower() in {".jpg", ".webp", ".png"})
    jobs = [(photos[i % len(photos)], str(folder / Path(photos[i % len(photos)]).parent.name / f"{i:06d}.jpg"), i)
            for i in range(count)]  # fmt: skip
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=64))
    return folder


def _write_jpeg(job: tuple[str, str, int]) -> None:
    from PIL import Image

    source, target, index = job
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).convert("RGB").resize((500, 375)).save(target, quality=75 + index % 20)


if __name__ == "__main__":
    main()
