"""What config.json records about a run besides its settings: resolved choices, data, versions, machine, command.

record = config_record(cfg, runtime, pre, data, weights="hub cache ...")
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from foldertune.config import RunConfig
from foldertune.data.split import split_counts
from foldertune.device import Runtime, cpu_name
from foldertune.preprocessing import Preprocessing
from foldertune.runs.checkpoint import versions
from foldertune.training.interrupt import launcher
from foldertune.training.loaders import default_workers
from foldertune.training.prepare import PreparedData


def config_record(cfg: RunConfig, runtime: Runtime, pre: Preprocessing, data: PreparedData, weights: str) -> dict:
    """config.json: the settings, what they resolved to, the data, versions and the machine."""
    workers = default_workers(runtime.device.type) if cfg.data.workers is None else cfg.data.workers
    return {
        "settings": cfg.to_dict(),
        "resolved": {
            "device": str(runtime.device),
            "precision": runtime.precision,
            "channels_last": runtime.channels_last,
            "workers": workers,
            "preprocessing": pre.to_dict(),
            "weights": weights,
        },
        "data": {
            "source": data.source,
            "classes": data.classes,
            "counts": split_counts(data.records),
            "skipped": len(data.skipped),
        },
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "started": now(),
        "command": command(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command() -> str:
    program = Path(sys.argv[0]).name
    if program == "__main__.py":  # python -m foldertune, or torchrun -m foldertune
        program = launcher("python -m foldertune")
    return " ".join([program, *sys.argv[1:]])
