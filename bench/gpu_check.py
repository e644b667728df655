"""One short CUDA check: train the bundled sample with resnet18 and mobilenet_v2, fp32 and automatic precision.

    python bench/gpu_check.py                 # needs a CUDA GPU; about a minute on a recent one
    python bench/gpu_check.py --epochs 5 --project /tmp/gpu_runs

Prints one row per (backbone, precision): the precision "auto" resolved to, training images/s of the last epoch,
evaluation accuracy of best.pt, and wall time. mobilenet_v2 starts from its ImageNet weights (found as foldertune
always finds them: hub cache, download, package index); resnet18 does too when its torchvision file is in the hub
cache, otherwise it trains from random weights and says so. With two or more GPUs it also trains mobilenet_v2
under `torchrun --nproc_per_node=2` (DDP over NCCL) and adds that row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import foldertune as ft
from foldertune.models.registry import get_backbone
from foldertune.models.weights import hub_checkpoint_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--project", default=None, help="where the run folders go (default: a temporary folder)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: PyTorch sees no CUDA GPU here.")
    project = Path(args.project or tempfile.mkdtemp(prefix="foldertune-gpu-"))
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; bf16: {torch.cuda.is_bf16_supported()}")
    rows = []
    for model in ("resnet18", "mobilenet_v2"):
        cached = (hub_checkpoint_dir() / get_backbone(model).weights_file).is_file()
        pretrained = model == "mobilenet_v2" or cached
        for precision in ("fp32", "auto"):
            started = time.perf_counter()
            run = ft.train(
                model=model, epochs=args.epochs, precision=precision, device="cuda", pretrained=pretrained,
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
        rows.append(distributed_row(project, args.epochs))
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


if __name__ == "__main__":
    main()
