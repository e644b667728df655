"""The scan cache: a second scan of an unchanged folder reads no file, and a changed file is never served stale."""

import os
import shutil

import numpy as np
from helpers import copy_subset
from PIL import Image

from foldertune.data.check import find_duplicates
from foldertune.data.near_duplicates import find_near_pairs, perceptual_hashes
from foldertune.data.scan import scan_folder
from foldertune.data.scan_cache import ScanCache


def scan(root, cache_dir):
    """What `train` reads of a folder: the scan, the digests of files of equal size, the perceptual hashes (and the
    near pairs they give, kept in the cache as a whole)."""
    cache = ScanCache.at(cache_dir)  # a new process would open it afresh, as here
    result = scan_folder(root, progress=False, cache=cache)
    groups = find_duplicates(result.images, result.info, progress=False, cache=cache)
    paths = [record.path for record in result.images]
    hashes = perceptual_hashes(paths, progress=False, cache=cache)
    near = [(pair.first, pair.second, pair.how) for pair in find_near_pairs(paths, progress=False, cache=cache)]
    return result, groups, dict(zip(paths, map(tuple, hashes), strict=True)), cache.read_afresh, near


def test_unchanged_files_are_not_read_again_and_changed_ones_are(tmp_path):
    root = copy_subset(tmp_path / "photos", 3, {"fishes": "fishes", "tools": "tools"})
    ramp = np.repeat(np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(48, axis=0)
    for i, pixels in enumerate((ramp, ramp.transpose(1, 0, 2))):  # PNGs of equal size (stored), other pictures
        Image.fromarray(np.ascontiguousarray(pixels)).save(root / "tools" / f"ramp{i}.png", compress_level=0)
    cache_dir = tmp_path / "cache"
    first, groups, hashes, read, near = scan(root, cache_dir)
    assert read == {record.path for record in first.images} and len(read) == 8 and groups == []
    kept = {kind for (kind,) in ScanCache.at(cache_dir).connection.execute("SELECT kind FROM results")}
    assert kept == {"copies", "near pairs"}  # the groups and pairs of this folder as it is

    again, groups, hashes_again, read, near_again = scan(root, cache_dir)
    assert read == set() and groups == [] and near_again == near
    assert again.images == first.images and again.info == first.info and hashes_again == hashes

    touched = first.images[0].path
    os.utime(touched, ns=(os.stat(touched).st_atime_ns, os.stat(touched).st_mtime_ns + 10**9))
    after_touch, _, _, read, _ = scan(root, cache_dir)
    assert read == {touched} and after_touch.info[touched].mtime_ns == os.stat(touched).st_mtime_ns

    # ramp0.png replaced by ramp1.png's bytes: same name, same size, even its old modification time put back
    replaced, other = root / "tools" / "ramp0.png", root / "tools" / "ramp1.png"
    old = os.stat(replaced)
    shutil.copyfile(other, replaced)
    os.utime(replaced, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert os.stat(replaced).st_size == old.st_size and os.stat(replaced).st_mtime_ns == old.st_mtime_ns
    _, groups, hashes_now, read, near = scan(root, cache_dir)
    assert read >= {str(replaced)} and str(other) not in read  # the status-change time gave it away
    assert [[record.path for record in group] for group in groups] == [[str(replaced), str(other)]]  # now copies
    assert hashes_now[str(replaced)] == hashes_now[str(other)] != hashes[str(replaced)]


def test_near_pairs_kept_for_a_folder_are_not_served_once_a_file_changed(tmp_path):
    root = copy_subset(tmp_path / "photos", 2, {"fishes": "fishes", "tools": "tools"})
    paths = sorted(str(path) for path in root.rglob("*.webp"))
    assert len(paths) == 4 and find_near_pairs(paths, progress=False, cache=ScanCache.at(tmp_path / "cache")) == []
    # a tool photo replaced by a smaller copy of a fish photo, with its old modification time put back
    fish, tool = (next(path for path in paths if f"/{name}/" in path) for name in ("fishes", "tools"))
    old = os.stat(tool)
    with Image.open(fish) as photo:
        photo.resize((photo.width // 2, photo.height // 2)).save(tool)
    os.utime(tool, ns=(old.st_atime_ns, old.st_mtime_ns))
    found = find_near_pairs(paths, progress=False, cache=ScanCache.at(tmp_path / "cache"))
    assert [{pair.first, pair.second} for pair in found] == [{fish, tool}]


def test_a_cache_that_cannot_be_opened_reads_every_file(tmp_path):
    root = copy_subset(tmp_path / "photos", 2, {"fishes": "fishes", "tools": "tools"})
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    cache = ScanCache.at(blocked)
    result = scan_folder(root, progress=False, cache=cache)
    assert len(result.images) == 4 and len(cache.read_afresh) == 4
    assert cache.summary().startswith("files read: 4 afresh, 0 unchanged") and "no scan cache" in cache.summary()
