"""Near-duplicates: copies of one photo that are not byte-identical (resized, re-encoded, cropped, mirrored).

    pairs = find_near_pairs(paths, features=features)      # [NearPair(first, second, how)]: by hash, then cosine
    hashes = perceptual_hashes(paths)                       # (N, 2) uint64: pHash of each image and of its mirror
    candidates = hash_pairs(hashes, max_distance=4)         # [(i, j, bits)], i < j, then confirmed by fine_hashes
    crops = embedding_pairs(features)                       # [(i, j, cosine)]: the backbone's view
    groups = connected_groups(len(paths), candidates + crops)   # [[i, j, k], ...] each 2+ images of one photo

Two views, because each catches what the other misses: a perceptual hash (imagehash's DCT pHash over 64 bits) finds
every resized and re-encoded copy and, hashed mirrored as well, every mirrored one, but few cropped ones; the cosine
of the frozen backbone's features finds crops but misses some strongly downscaled copies. Neither search is
quadratic in memory: hashes are bucketed by bands of bits (two hashes within `max_distance` bits share at least one
band exactly, by the pigeonhole principle), and the cosine is computed one block of rows at a time. Neither view
alone tells copies from look-alikes in uniform data (small garments on black): a hash pair must also agree in a
4x finer hash, and a cosine pair must stand out from each image's neighbourhood.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from foldertune.data.images import ImageReadError, open_image
from foldertune.data.scan_cache import ScanCache

HASH_DISTANCE = 4  # bits of 64 within which two pHashes are one photo: copies measure 0-4, distinct photos 14+
FINE_DISTANCE = 20  # ... and bits of 256 within which their finer pHashes agree: resized, re-encoded (JPEG q60) and
# mirrored copies of the sample's photos measured 0-12; look-alike Fashion-MNIST garments within 4 bits of 64, 28+
MIN_COSINE = 0.9  # feature cosine above which two images may be one photo (crops and mirrors measure 0.9+)
NEIGHBOURS = 20  # ... if also much closer than each one's 20th nearest image (a photo with under 20 copies stands out)
CLOSER = 0.3  # ... at most 0.3 times that distance (0 pairs among 3,000 Fashion-MNIST garments, 18,751 without it)
BLOCK = 512  # rows of the similarity matrix held at once: BLOCK x N float32
MAX_FOLD_GROUP = 20  # copies (exact, or near by hash or feature cosine) share a fold, unless their group is larger:
# then it is a chain of look-alikes, not copies of one image (before near pairs had to stand out from their
# neighbourhood, 3,000 Fashion-MNIST images chained into groups of 1,038 and 583, and one fold holding a third of
# the images left its head without them); exact copies stay together always


@dataclass(frozen=True)
class NearPair:
    """Two files that hold one photo, and how that was seen."""

    first: str  # path
    second: str  # path
    how: str  # "hash distance 2 bits", "mirrored, hash distance 0 bits", "feature cosine 0.94"


FLAT = np.uint64(1 << 63)  # the pHash of a picture of one colour, whatever its size: only the mean is above the median


def find_near_pairs(
    paths: Sequence[str],
    *,
    hashes: np.ndarray | None = None,
    features: np.ndarray | None = None,
    max_distance: int = HASH_DISTANCE,
    min_cosine: float = MIN_COSINE,
    workers: int | None = None,
    progress: bool = True,
    cache: ScanCache | None = None,
) -> list[NearPair]:
    """Near-duplicate pairs among `paths` by perceptual hash (computed unless given, or known to the `cache`) and,
    when `features` (one row per path) are given, by feature cosine; a pair both find is listed once, with the
    hash's reason. With a `cache` and the hashes to compute, the pairs of files all unchanged since an earlier
    scan are that scan's: comparing 100,000 hashes takes seconds."""
    key = None
    if hashes is None and features is None and cache is not None:
        key = cache.fingerprint("near pairs", list(paths), max_distance, FINE_DISTANCE)
        known = cache.result(key)
        if known is not None:
            return [NearPair(*pair) for pair in known]
    if hashes is None:
        hashes = perceptual_hashes(paths, workers=workers, progress=progress, cache=cache)
    candidates = hash_pairs(hashes, max_distance=max_distance)
    fine = fine_hashes(paths, sorted({k for i, j, _ in candidates for k in (i, j)}), workers=workers)
    found: dict[tuple[int, int], str] = {}
    for i, j, distance in candidates:
        if fine_distance(fine[i], fine[j]) > FINE_DISTANCE:
            continue  # look-alikes (garments on black, 28 px): close in 64 bits, apart in 256
        mirrored = int(hashes[i, 0] ^ hashes[j, 0]).bit_count() > distance
        found[(i, j)] = f"{'mirrored, ' if mirrored else ''}hash distance {distance:.0f} bits"
    if features is not None:
        for i, j, cosine in embedding_pairs(features, min_cosine=min_cosine, progress=progress):
            found.setdefault((i, j), f"feature cosine {cosine:.2f}")
    pairs = [NearPair(paths[i], paths[j], how) for (i, j), how in sorted(found.items())]
    if key is not None:
        cache.store_result(key, "near pairs", [[pair.first, pair.second, pair.how] for pair in pairs])
    return pairs


def perceptual_hashes(
    paths: Sequence[str], *, workers: int | None = None, progress: bool = True, cache: ScanCache | None = None
) -> np.ndarray:
    """(N, 2) uint64: the 64-bit pHash of each image as training reads it, and of its mirror image; an image that
    cannot be read gets 0, 0 and matches nothing (see `hash_pairs`). Files the `cache` knows unchanged are not
    read."""
    import imagehash

    def both(path: str) -> tuple[int, int] | None:
        try:
            image = open_image(path, min_side=64)  # pHash looks at 32x32: a reduced JPEG decode loses nothing
        except ImageReadError:
            return None
        with image:
            grey = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
        return _as_int(imagehash.phash(grey)), _as_int(imagehash.phash(grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))

    known = cache.hashes(paths) if cache is not None else {}
    to_read = [path for path in dict.fromkeys(paths) if path not in known]
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        bar = tqdm(pool.map(both, to_read), total=len(to_read), desc="hashing images", unit="img",
                   disable=None if progress else True, leave=False)  # fmt: skip
        found = dict(zip(to_read, bar, strict=True))
    if cache is not None:
        cache.note_read(found)
        cache.store_hashes({path: pair for path, pair in found.items() if pair is not None})
    pairs = [known[path] if path in known else found[path] or (0, 0) for path in paths]
    return np.array(pairs, dtype=np.uint64).reshape(len(paths), 2)


def fine_hashes(paths: Sequence[str], chosen: Sequence[int], *, workers: int | None = None) -> dict[int, tuple | None]:
    """{index: (pHash, pHash of the mirror image)} over 256 bits (16 x 16 DCT of a 64 x 64 grey picture) for the
    `chosen` indices of `paths`; None for an image that cannot be read. Computed for candidate pairs only."""
    import imagehash

    def both(index: int) -> tuple | None:
        try:
            image = open_image(paths[index], min_side=64)
        except ImageReadError:
            return None
        with image:
            grey = image.convert("L").resize((64, 64), Image.Resampling.LANCZOS)
        mirror = grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return imagehash.phash(grey, hash_size=16), imagehash.phash(mirror, hash_size=16)

    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(chosen, pool.map(both, chosen), strict=True))


def fine_distance(first: tuple | None, second: tuple | None) -> int:
    """Bits apart of two `fine_hashes` entries, the second as it is or mirrored (256: unreadable)."""
    if first is None or second is None:
        return 256
    return min(first[0] - second[0], first[0] - second[1])


def hash_pairs(hashes: np.ndarray, *, max_distance: int = HASH_DISTANCE) -> list[tuple[int, int, float]]:
    """Pairs (i, j, bits) whose hashes, or one's hash and the other's mirror hash, differ in at most
    `max_distance` bits. Candidates come from buckets of equal bands, so the work grows with the pairs, not N^2."""
    plain, mirrored = hashes[:, 0], hashes[:, 1]
    valid = np.flatnonzero((plain != 0) & (plain != FLAT))  # unreadable, or a picture of one colour: no structure
    bands = max_distance + 1
    widths = [64 // bands + (b < 64 % bands) for b in range(bands)]
    found: dict[tuple[int, int], int] = {}
    for query in (plain, mirrored):
        shift = 0
        for width in widths:
            mask = np.uint64((1 << width) - 1)
            keys = (plain[valid] >> np.uint64(shift)) & mask
            wanted = (query[valid] >> np.uint64(shift)) & mask
            shift += width
            order = np.argsort(keys, kind="stable")
            ordered = keys[order]
            left = np.searchsorted(ordered, wanted, "left")
            counts = np.searchsorted(ordered, wanted, "right") - left
            starts = np.repeat(left - np.cumsum(counts) + counts, counts)
            i = valid[order[np.arange(counts.sum()) + starts]]  # every image whose band equals j's
            j = np.repeat(valid, counts)
            distance = np.minimum.reduce([_bits(plain[i] ^ plain[j]), _bits(plain[i] ^ mirrored[j]),
                                          _bits(mirrored[i] ^ plain[j])])  # fmt: skip
            close = (distance <= max_distance) & (i != j)
            for a, b, d in zip(i[close].tolist(), j[close].tolist(), distance[close].tolist(), strict=True):
                found[(min(a, b), max(a, b))] = d
    return [(i, j, float(d)) for (i, j), d in sorted(found.items())]


def embedding_pairs(
    features: np.ndarray,
    *,
    min_cosine: float = MIN_COSINE,
    neighbours: int = NEIGHBOURS,
    closer: float = CLOSER,
    block: int = BLOCK,
    progress: bool = False,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) of feature rows that are one photo, i < j: cosine of at least `min_cosine`, and a
    distance (1 - cosine) at most `closer` times each one's distance to its `neighbours`-th nearest row.

    The second condition makes the threshold follow the data: among natural photos the 20th nearest sits far away
    (cosine about 0.65) and a crop stands out; among uniform pictures (28 px garments on black) thousands of distinct
    images pass 0.9, but none is much closer than its 20 nearest. Memory: the normalised features plus one
    block x N similarity matrix, never N x N.
    """
    vectors = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    count = len(vectors)
    if count < 2:
        return []
    kth = min(neighbours, count - 1)
    reach = np.empty(count, dtype=np.float32)  # each row's distance to its kth nearest other row
    candidates = []
    starts = range(0, count, block)
    for start in tqdm(starts, desc="comparing features", unit="block", disable=None if progress else True, leave=False):
        similarity = vectors[start : start + block] @ vectors.T  # (block, N): whole rows, for the kth nearest
        rows = np.arange(len(similarity))
        similarity[rows, start + rows] = -np.inf  # not its own neighbour
        reach[start : start + len(rows)] = 1 - np.partition(similarity, -kth, axis=1)[:, -kth]
        limit = np.maximum(min_cosine, 1 - closer * reach[start : start + len(rows)])
        row, column = np.nonzero(similarity >= limit[:, None])
        later = column > start + row  # each pair once, from its first row; the other's reach is checked below
        candidates.append((start + row[later], column[later], similarity[row[later], column[later]]))
    if not candidates:
        return []
    first, second, cosine = (np.concatenate(parts) for parts in zip(*candidates, strict=True))
    keep = 1 - cosine <= closer * reach[second]
    return list(zip(first[keep].tolist(), second[keep].tolist(), cosine[keep].astype(float).tolist(), strict=True))


def connected_groups(count: int, pairs: Sequence[tuple[int, int, float]]) -> list[list[int]]:
    """The images joined by pairs, as groups of 2+ indices (sorted), by union-find."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in sorted({i for pair in pairs for i in pair[:2]}):  # the others are alone: 40 pairs among 100,000 images
        groups[root(i)].append(i)
    return sorted((members for members in groups.values() if len(members) > 1), key=lambda members: members[0])


def _as_int(image_hash) -> int:
    return int("".join("1" if bit else "0" for bit in image_hash.hash.flatten()), 2)


_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


def _bits(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy 2's bitwise_count where there, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _POPCOUNT[np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8).reshape(-1, 8)].sum(axis=1)


def copy_groups(records: Sequence, exact_groups: Sequence[Sequence], near_pairs: Sequence[NearPair]) -> list[list]:
    """Exact copy groups and near-duplicate pairs joined into groups of records that must share a split."""
    index = {record.path: i for i, record in enumerate(records)}
    pairs = [(index[a.path], index[b.path], 0.0) for group in exact_groups for a, b in pairwise(group)
             if a.path in index and b.path in index]  # fmt: skip
    pairs += [(index[p.first], index[p.second], 0.0) for p in near_pairs if p.first in index and p.second in index]
    return [[records[i] for i in members] for members in connected_groups(len(records), pairs)]


def fold_groups(records: Sequence, exact_groups: Sequence[Sequence], near_pairs: Sequence[NearPair]) -> list[list]:
    """The groups of records that must share a fold: exact copies always, near copies while their group is no larger
    than MAX_FOLD_GROUP (a longer chain is look-alikes, not copies of one image)."""
    exact = copy_groups(records, exact_groups, [])
    near = [group for group in copy_groups(records, exact_groups, near_pairs) if len(group) <= MAX_FOLD_GROUP]
    return exact + near
