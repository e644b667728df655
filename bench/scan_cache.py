"""A big folder, scanned twice: time from `foldertune train` to its first training step, and files read afresh.

    python bench/scan_cache.py                            # 100,000 images in a temporary folder (about 450 MB)
    python bench/scan_cache.py --images 20000             # a smaller folder
    python bench/scan_cache.py --folder /tmp/big --keep   # make (or reuse) the folder there and keep it

The folder holds 10 classes of 64x64 JPEGs of smooth random colour fields: every file different (none is a copy or
near copy of another, as in a real folder), small enough that the scan's per-file costs (opening, decoding, hashing)
dominate. Each run is a fresh process of `foldertune train DATA --epochs 1 --workers 0` (one cache folder for all),
stopped once the first training batch is loaded: run 1 with an empty scan cache, run 2 with what run 1 left, run 3
after one file was touched (so it is read again). The target: run 2 within 10 s, with 0 files read afresh. The
CPU seconds of each run are printed too: on a shared machine they move less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = 10
TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="images in the folder (default: 100,000)")
    parser.add_argument("--folder", type=Path, help="where to make the folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --folder afterwards (it is reused when complete)")
    parser.add_argument("task", nargs="*", help=argparse.SUPPRESS)  # internal: one run, up to its first step
    args = parser.parse_args()
    if args.task:
        first_step(*args.task)
        return

    from foldertune.device import cpu_name

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="foldertune-scan-"))
    folder = args.folder or base / "images"
    try:
        started = time.perf_counter()
        made = make_folder(folder, args.images)
        print(f"folder: {folder}, {args.images:,} images ({made:,} written in {time.perf_counter() - started:.0f} s)")
        cache = base / "cache"
        rows = [("empty cache", run(folder, cache, base / "runs1"))]
        rows.append(("unchanged folder", run(folder, cache, base / "runs2")))
        touched = next((folder / "class0").iterdir())
        os.utime(touched)
        rows.append(("one file touched", run(folder, cache, base / "runs3")))
        print("\n| run | to first step, s | CPU s | files read |\n|---|---|---|---|")
        for name, (seconds, cpu, line) in rows:
            print(f"| {name} | {seconds:.1f} | {cpu:.1f} | {line} |")
        seconds = rows[1][1][0]
        met = seconds <= TARGET_SECONDS and rows[1][1][2].startswith("0 ")
        print(f"\ntarget (unchanged folder: first step within {TARGET_SECONDS:.0f} s, nothing read afresh): "
              f"{'met' if met else 'NOT met'} ({seconds:.1f} s, {args.images:,} images)")  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if args.folder and not args.keep:
            shutil.rmtree(args.folder, ignore_errors=True)


def make_folder(folder: Path, images: int) -> int:
    """10 class folders of 64x64 JPEGs, each a different smooth random colour field; returns how many were written
    (a complete folder from an earlier --keep is reused)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    written = 0
    for i in range(images):
        path = folder / f"class{i % CLASSES}" / f"{i:06d}.jpg"
        if path.exists():
            continue
        if i < CLASSES or written == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        seed = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        Image.fromarray(seed).resize((64, 64), Image.Resampling.BICUBIC).save(path, quality=85)
        written += 1
    return written


def run(folder: Path, cache: Path, project: Path) -> tuple[float, float, str]:
    """A fresh process up to its first training batch: seconds, CPU seconds, and its "files read" line."""
    env = {**os.environ, "FOLDERTUNE_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, str(folder), str(project)], env=env, capture_output=True,
                          text=True)  # fmt: skip
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if "first step" not in done.stdout:
        raise SystemExit(f"the run did not reach its first step:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("files read:")), "?").removeprefix("files read: ")
    print(f"  {seconds:5.1f} s ({cpu:.1f} CPU s) to the first step; files read: {line}", flush=True)
    return seconds, cpu, line


def first_step(folder: str, project: str) -> None:
    """`foldertune train` as the command line runs it, ended once the first training batch is there."""
    import foldertune.training.prepare as prepare
    from foldertune.cli import main as cli

    def first_batch(network, loader, *args, **kwargs):
        next(iter(loader))
        print("first step", flush=True)
        os._exit(0)  # the bench ends here: nothing after the first step is measured

    def prepared(*args, **kwargs):  # torch is imported where the command imports it, after the scan
        data = prepare_data(*args, **kwargs)
        import foldertune.training.fit as fit

        fit.train_one_epoch = first_batch
        return data

    prepare_data, prepare.prepare_data = prepare.prepare_data, prepared
    cli(["train", folder, "--epochs", "1", "--workers", "0", "--quiet", "--project", project])


if __name__ == "__main__":
    main()
