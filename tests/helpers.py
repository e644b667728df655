"""Builders shared by the tests: real-photo subsets, odd and broken image files, a CLI runner."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.data import sample_data_path

SAMPLE = sample_data_path()


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file the project wrote, one dict per row (read with the standard library, not the project's code)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """epochs.csv rows without the columns that measure time."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]


def wait_for_steps(process: subprocess.Popen, run: Path, steps: int, timeout: float = 300) -> None:
    """Until the training `process` has logged `steps` rows to RUN/batches.csv (or ended, or `timeout` passed)."""
    import time

    deadline = time.monotonic() + timeout
    log = run / "batches.csv"
    while process.poll() is None and time.monotonic() < deadline:
        if log.exists() and len(read_csv(log)) >= steps:
            return
        time.sleep(0.01)


def assert_trained_alike(run: Path, whole: Path) -> None:
    """`run` (interrupted, then resumed) logged and learned exactly what the uninterrupted `whole` did."""
    import torch

    assert without_timing(read_csv(run / "epochs.csv")) == without_timing(read_csv(whole / "epochs.csv"))
    assert read_csv(run / "batches.csv") == read_csv(whole / "batches.csv")
    resumed = torch.load(run / "last.pt", weights_only=True)["model"]
    uninterrupted = torch.load(whole / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def copy_subset(destination: Path, per_class: int, classes: dict[str, str] | None = None) -> Path:
    """`per_class` sample photos of each class (or of `classes`: sample name -> new folder name)."""
    classes = classes or {d.name: d.name for d in sorted(SAMPLE.iterdir()) if d.is_dir()}
    for source_name, target_name in classes.items():
        target = destination / target_name
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted((SAMPLE / source_name).iterdir())[:per_class]:
            shutil.copy(photo, target / photo.name)
    return destination


def tree_fingerprint(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size, mtime and content hash: to prove nothing was changed."""
    result = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            result[rel] = ("link", os.readlink(path))
        elif path.is_file():
            stat = path.stat()
            result[rel] = ("file", stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            result[rel] = ("dir",)
    return result


def quadrants(width: int = 40, height: int = 20) -> Image.Image:
    """An asymmetric test picture: red, green / blue, white quadrants."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    for box, color in (
        ((0, 0, half_w, half_h), (255, 0, 0)),
        ((half_w, 0, width, half_h), (0, 255, 0)),
        ((0, half_h, half_w, height), (0, 0, 255)),
        ((half_w, half_h, width, height), (255, 255, 255)),
    ):
        image.paste(color, box)
    return image


def save_with_orientation(image: Image.Image, path: Path, orientation: int) -> None:
    """Store `image` the way a camera would for EXIF `orientation`, so that a viewer shows `image` upright."""
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = image if inverse is None else image.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)


def write_good_images(folder: Path) -> dict[str, Path]:
    """One file per readable oddity, each named after what it tests."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def keep(name: str, image: Image.Image, **options) -> None:
        files[name] = folder / name
        image.save(files[name], **options)

    keep("rgb.jpg", Image.new("RGB", (32, 24), (200, 30, 30)))
    keep("UPPER.JPG", Image.new("RGB", (32, 24), (30, 200, 30)))
    keep("Mixed.Png", Image.new("RGB", (32, 24), (30, 30, 200)))
    keep("gray.png", Image.new("L", (32, 24), 77))
    keep("bilevel.png", Image.new("1", (32, 24), 1))
    la = Image.new("LA", (32, 24), (0, 255))
    la.paste((0, 0), (0, 0, 16, 24))  # left half fully transparent
    keep("la.png", la)
    rgba = Image.new("RGBA", (32, 24), (255, 0, 0, 128))  # half-transparent red over white: pink
    keep("rgba.png", rgba)
    palette = Image.new("P", (32, 24), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 16, 24))
    keep("palette_transparent.png", palette, transparency=0)  # left half: transparent index 0
    keep("palette.gif", Image.new("P", (32, 24), 0))
    keep("cmyk.jpg", Image.new("CMYK", (32, 24), (255, 0, 0, 0)))  # pure cyan
    sixteen = np.full((24, 32), 32768, dtype=np.uint16)
    keep("gray16.png", Image.fromarray(sixteen))
    red, blue = Image.new("RGB", (32, 24), (255, 0, 0)), Image.new("RGB", (32, 24), (0, 0, 255))
    files["animated.gif"] = folder / "animated.gif"
    red.save(files["animated.gif"], save_all=True, append_images=[blue], duration=100, loop=0)
    keep("photo.webp", Image.new("RGB", (32, 24), (10, 120, 200)))
    keep("photo.bmp", Image.new("RGB", (32, 24), (10, 120, 200)))
    keep("photo.tiff", Image.new("RGB", (32, 24), (10, 120, 200)))
    keep("photo.tif", Image.new("RGBA", (32, 24), (10, 120, 200, 255)))
    files["exif6.jpg"] = folder / "exif6.jpg"
    save_with_orientation(quadrants(), files["exif6.jpg"], 6)
    return files


def write_bad_images(folder: Path) -> dict[str, str]:
    """Files named as images that cannot be used, each mapped to a word its reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    buffer = folder / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, quality=90)
    (folder / "truncated.jpg").write_bytes(buffer.read_bytes()[: buffer.stat().st_size // 2])
    buffer.unlink()
    (folder / "random.png").write_bytes(np.random.default_rng(1).bytes(2048))
    (folder / "text.jpg").write_text("this is not a picture\n")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 M pixels in 48 kB
    os.symlink(folder / "does-not-exist.jpg", folder / "dangling.jpg")
    return {
        "zero.jpg": "empty",
        "truncated.jpg": "truncated",
        "random.png": "not an image",
        "text.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "dangling.jpg": "broken symbolic link",
    }


def write_hostile_corpus(root: Path) -> tuple[set[str], dict[str, str]]:
    """A data folder with everything users' folders hold: (usable image paths, bad file path -> reason word).

    Two real classes (one with a Chinese name and a space), real photos in nested folders and in every odd format,
    EXIF orientations 1-8, upper-case extensions, broken files of every kind spread over the classes, an empty class
    folder, a symbolic link loop and a dangling link, hidden files, __MACOSX litter and a stray text file.
    """
    fish, monuments = root / "鱼 fish", root / "monuments"
    copy_subset(root, 6, {"fishes": "鱼 fish", "monuments": "monuments"})
    photo = Image.open(SAMPLE / "monuments" / sorted(os.listdir(SAMPLE / "monuments"))[7]).convert("RGB")
    photo = photo.resize((photo.width // 4, photo.height // 4))
    nested = fish / "deep" / "er"
    nested.mkdir(parents=True)
    fish_photo = Image.open(SAMPLE / "fishes" / sorted(os.listdir(SAMPLE / "fishes"))[7]).convert("RGB")
    fish_photo.save(nested / "鱼 in a nested folder.JPG", quality=90)
    for orientation in range(1, 9):
        save_with_orientation(photo, monuments / f"exif{orientation}.jpg", orientation)
    photo.convert("CMYK").save(monuments / "cmyk.jpg")
    Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(monuments / "gray16.png")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(monuments / "palette transparent.png", transparency=0)
    photo.convert("LA").save(monuments / "la.png")
    photo.save(monuments / "animated.gif", save_all=True, append_images=[photo.rotate(90)], duration=100)
    photo.save(monuments / "photo.WEBP")
    photo.save(monuments / "photo.bmp")
    photo.save(monuments / "photo.tiff")
    good = {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}

    bad_files = write_bad_images(root / "bad-tmp")
    bad = {}
    for index, (name, word) in enumerate(sorted(bad_files.items())):
        target = (fish if index % 2 else monuments) / name
        source = root / "bad-tmp" / name
        if source.is_symlink():
            os.symlink(root / "gone" / name, target)
        else:
            os.replace(source, target)
        bad[str(target.relative_to(root))] = word
    shutil.rmtree(root / "bad-tmp")

    (root / "empty class").mkdir()
    os.symlink(root, monuments / "loop")  # a link to a folder above it
    (fish / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (fish / ".hidden.jpg").write_bytes(b"hidden")
    (root / "__MACOSX" / "monuments").mkdir(parents=True)
    (root / "__MACOSX" / "monuments" / "._exif1.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    (monuments / "._photo.bmp").write_bytes(b"\0\5\26\7 AppleDouble")
    (monuments / "Thumbs.db").write_bytes(b"thumbs")
    (fish / "notes.txt").write_text("photos from the aquarium\n")
    return good, bad


def read_wandb_records(run_file: Path) -> list:
    """The records of a W&B run's transaction log (run-ID.wandb), parsed with wandb's own protobuf classes.

    The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header
    (checksum, length, type: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the tail of a block too short for a chunk header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def in_python_words(sentence: str, command: str) -> str:
    """A CLI sentence as the API says it: each flag of `command` as its keyword ('--batch-size' -> 'batch_size=',
    a switch '--force' -> 'force=True')."""
    import argparse
    import re

    from foldertune.cli import build_parser

    actions = {o: a for a in build_parser().commands[command]._actions for o in a.option_strings}
    switches = (argparse._StoreTrueAction, argparse._StoreFalseAction)

    def keyword(match: re.Match) -> str:
        action = actions.get(match.group(0))
        if action is None:
            return match.group(0)
        return match.group(1).replace("-", "_") + ("=True" if isinstance(action, switches) else "=")

    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", keyword, sentence)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`foldertune ARGS...` as a real subprocess of this Python."""
    return subprocess.run(
        [sys.executable, "-m", "foldertune", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


class Exploit:
    """Pickles into a call of os.system: what a malicious checkpoint does when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def network_logits(checkpoint: dict, paths: list) -> np.ndarray:
    """The logits of a checkpoint's network (unfused, plain eval mode, fp32 on the CPU) for image files, read as
    evaluation reads them: the reference that calibrated probabilities are checked against."""
    import torch

    from foldertune.data.readers import EvalReader
    from foldertune.data.transforms import normalize_batch
    from foldertune.models.build import model_from_checkpoint
    from foldertune.preprocessing import Preprocessing

    pre = Preprocessing.from_dict(checkpoint["preprocessing"])
    images = torch.stack([EvalReader(pre)(Path(path)) for path in paths])
    with torch.no_grad():
        return model_from_checkpoint(checkpoint).eval()(normalize_batch(images, pre)).double().numpy()
