"""How fast `foldertune check` reads a dataset, against the plain PIL loop most scripts use, side by side.

    python bench/check_speed.py                 # 5,000 sample-size files and 200 phone-size JPEGs: about 2 minutes
    python bench/check_speed.py --files 20000   # more files

Data: copies of the bundled sample photos (about 320x240 WebP), each re-encoded with a different quality so that no
two files are identical and sizes rarely collide (as in a real folder), plus phone-size copies (4000x3000 JPEG),
in a temporary folder. Every case reads the same files from a warm page cache, in a fresh process:

- check --fast (headers): headers, EXIF, sizes; duplicates by hashing equal sizes;
- check: the default, every image decoded as training reads it (JPEGs at reduced scale) and perceptually hashed
  for near-duplicates;
- check --deep: every pixel decoded;
- the plain loop: `Image.open(path).convert("RGB")` for every file, one at a time: what a script does to find broken
  files (it decodes every pixel, and finds no duplicates).

Printed: files per second for each, and the ratios against the plain loop.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from foldertune.data import sample_data_path

PLAIN_LOOP = """
import sys
from pathlib import Path
from PIL import Image
broken = 0
for path in sorted(Path(sys.argv[1]).rglob("*")):
    if path.is_file():
        try:
            Image.open(path).convert("RGB")
        except Exception:
            broken += 1
print(broken)
"""


def make_folder(root: Path, files: int, phone: int) -> int:
    """`files` distinct small images and `phone` distinct 4000x3000 JPEGs, spread over the sample's classes."""
    photos = sorted(p for p in sample_data_path().rglob("*.webp"))
    made = 0
    for index in range(files):
        source = photos[index % len(photos)]
        target = root / source.parent.name / f"{index:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(source).convert("RGB").save(target, quality=60 + index % 35, comment=str(index).encode())
        made += 1
    for index in range(phone):
        source = photos[index % len(photos)]
        target = root / source.parent.name / f"phone{index:04d}.jpg"
        Image.open(source).convert("RGB").resize((4000, 3000)).save(target, quality=85 + index % 10)
        made += 1
    return made


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000, help="sample-size files (default: 5000)")
    parser.add_argument("--phone", type=int, default=200, help="phone-size JPEGs (default: 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        print(f"writing {args.files} + {args.phone} files ...", flush=True)
        total = make_folder(data, args.files, args.phone)
        subprocess.run(["cat", *map(str, data.rglob("*.jpg"))], stdout=subprocess.DEVNULL, check=True)  # warm cache
        out = Path(folder) / "check.csv"
        check = [sys.executable, "-m", "foldertune", "check", str(data), "--quiet", "--force", "--out", str(out)]
        cases = {
            "check --fast": [*check, "--fast"],
            "check": check,
            "check --deep": [*check, "--deep"],
            "plain PIL loop": [sys.executable, "-c", PLAIN_LOOP, str(data)],
        }
        seconds = {name: timed(command) for name, command in cases.items()}
    print(f"\n{total} files ({args.files} about 320x240, {args.phone} at 4000x3000), {os.cpu_count()} CPU cores")
    print(f"{'case':<18}{'seconds':>9}{'files/s':>10}{'vs plain loop':>15}")
    for name, value in seconds.items():
        ratio = seconds["plain PIL loop"] / value
        print(f"{name:<18}{value:>9.1f}{total / value:>10.0f}{ratio:>14.1f}x")


if __name__ == "__main__":
    main()
