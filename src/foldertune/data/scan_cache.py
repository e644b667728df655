"""What a scan learned about each image file, kept for the next scan: an unchanged folder is not read again.

    cache = ScanCache.at(cache_root(None))          # <cache>/scan-1.sqlite (keeps nothing when it cannot be opened)
    scan = scan_folder("photos/", cache=cache)       # only files new or changed since the last scan are read
    cache.read_afresh                                # how many files this scan had to read

An entry belongs to a file as it was: its absolute path, size, modification time and status-change time (which
changes with every write, rename over it or `touch`, and cannot be set back), so a file replaced under the same name
is read again, never served from the cache. Three things are kept per file, each when first computed: what reading
it found (`ImageInfo`, per decode level and pixel limit), its perceptual hashes (near_duplicates.py) and the digest
of its bytes (check.py, exact copies). Files that could not be read are not kept: they are read again each time.

The cache is one SQLite file, so several processes can read and write it at once. Nothing in it is precious: a
damaged or unwritable file only means the scan reads every image, as without a cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from foldertune.data.images import ImageInfo

FILE_NAME = "scan-1.sqlite"  # the number changes with the tables
# ImageInfo's fields but its file_bytes and mtime_ns, which are the entry's own size and mtime_ns
INFO_FIELDS = tuple(field.name for field in dataclasses.fields(ImageInfo))[:-2]
TABLES = {
    "verified": "read TEXT NOT NULL, " + ", ".join(INFO_FIELDS),  # an ImageInfo per decode level and pixel limit
    "hashes": "phash INTEGER NOT NULL, mirror INTEGER NOT NULL",  # pHash of the image and of its mirror (signed)
    "digests": "digest TEXT NOT NULL",  # BLAKE2b-128 of the bytes
}
RESULTS = "results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL)"  # whole-scan results, as JSON
KEPT_RESULTS = 20  # per kind: the latest, for as many folders (or states of one) scanned

Stamp = tuple[int, int, int]  # size, modification time, status-change time (ns)


class ScanCache:
    """Per-file results of earlier scans, served only while the file is unchanged."""

    def __init__(self, connection: sqlite3.Connection | None, problem: str = "") -> None:
        self.connection = connection
        self.problem = problem  # why there is no connection
        self.read_afresh: set[str] = set()  # paths read during this scan (not in the cache, or changed)
        self.served: set[str] = set()  # paths whose results came from the cache
        self._stamps: dict[str, Stamp | None] = {}

    @classmethod
    def at(cls, folder: str | os.PathLike) -> ScanCache:
        """The cache in `folder` (created if need be); one that keeps nothing when it cannot be opened there."""
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(Path(folder) / FILE_NAME, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")  # readers do not wait for a writer
            for table, columns in TABLES.items():
                key = "path, read" if table == "verified" else "path"
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns "
                    f"INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, {columns}, PRIMARY KEY ({key}))"
                )
            connection.execute(f"CREATE TABLE IF NOT EXISTS {RESULTS}")
        except (OSError, sqlite3.Error) as error:
            return cls(None, f"{Path(folder) / FILE_NAME}: {error}")
        return cls(connection)

    def stamp(self, path: str) -> Stamp | None:
        """The file's size and times as the cache compares them (once per scan); None when it cannot be stat'ed."""
        if path not in self._stamps:
            try:
                stat = os.stat(path)
                self._stamps[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
            except OSError:
                self._stamps[path] = None
        return self._stamps[path]

    def infos(self, paths: Iterable[str], read: str) -> dict[str, ImageInfo]:
        """What reading each unchanged file at `read` (decode level and pixel limit) found."""
        rows = self._lookup("verified", ", ".join(INFO_FIELDS), paths, extra=("read", read))
        stamps = self._stamps
        return {path: _info(row, stamps[path]) for path, row in rows.items()}

    def store_infos(self, infos: dict[str, ImageInfo], read: str) -> None:
        rows = {path: (read, *(getattr(info, name) for name in INFO_FIELDS)) for path, info in infos.items()}
        self._store("verified", ("read", *INFO_FIELDS), rows)

    def hashes(self, paths: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Perceptual hashes (unsigned 64-bit) of each unchanged file."""
        rows = self._lookup("hashes", "phash, mirror", paths)
        return {path: (_unsigned(phash), _unsigned(mirror)) for path, (phash, mirror) in rows.items()}

    def store_hashes(self, hashes: dict[str, tuple[int, int]]) -> None:
        self._store("hashes", ("phash", "mirror"), {p: (_signed(a), _signed(b)) for p, (a, b) in hashes.items()})

    def digests(self, paths: Iterable[str]) -> dict[str, str]:
        return self._lookup("digests", "digest", paths)

    def store_digests(self, digests: dict[str, str]) -> None:
        self._store("digests", ("digest",), {path: (digest,) for path, digest in digests.items()})

    def fingerprint(self, kind: str, paths: list[str], *settings: object) -> str | None:
        """The key of a result computed from these files alone (and `settings`): a digest of their paths, sizes and
        times, so any change to one of them is another key. None without a cache."""
        if self.connection is None:
            return None
        self._stat_all(paths)
        stamps = self._stamps
        # the text of f"{path}\0{stamp}" (keys stay those of earlier versions), a third faster
        lines = [f"{path}\0({s[0]}, {s[1]}, {s[2]})" if (s := stamps[path]) else f"{path}\0None" for path in paths]
        listing = "\n".join(lines)
        return hashlib.blake2b(f"{kind}\0{settings!r}\0{listing}".encode(), digest_size=16).hexdigest()

    def result(self, key: str | None):
        """What `store_result` kept under `key` (JSON values), or None."""
        if self.connection is None or key is None:
            return None
        try:
            row = self.connection.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else json.loads(row[0])

    def store_result(self, key: str | None, kind: str, value) -> None:
        """Keep `value` under `key`, and of each kind only the KEPT_RESULTS latest."""
        if self.connection is None or key is None:
            return
        try:
            with self.connection:
                self.connection.execute("BEGIN")
                self.connection.execute(
                    "INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, kind, json.dumps(value))
                )
                self.connection.execute(
                    "DELETE FROM results WHERE kind = ? AND rowid NOT IN "
                    "(SELECT rowid FROM results WHERE kind = ? ORDER BY rowid DESC LIMIT ?)",
                    (kind, kind, KEPT_RESULTS),
                )
        except sqlite3.Error:
            pass  # computed again next time

    def _stat_all(self, paths: list[str]) -> None:
        """`stamp` for many paths at once (the same values; one tight loop for a folder of 100,000)."""
        stamps = self._stamps
        for path in paths:
            if path not in stamps:
                try:
                    stat = os.stat(path)
                    stamps[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
                except OSError:
                    stamps[path] = None

    def note_read(self, paths: Iterable[str]) -> None:
        self.read_afresh.update(paths)

    def summary(self) -> str:
        """One line: how many files were read afresh, how many known from the cache."""
        fresh = len(self.read_afresh)
        known = len(self.served - self.read_afresh)
        where = "" if self.connection is not None else f" (no scan cache: {self.problem})"
        return f"files read: {fresh:,} afresh, {known:,} unchanged since an earlier scan{where}"

    def _lookup(self, table: str, columns: str, paths: Iterable[str], extra: tuple[str, str] | None = None) -> dict:
        if self.connection is None:
            return {}
        paths = list(paths)
        self._stat_all(paths)
        stamps = self._stamps
        wanted = {path for path in paths if stamps[path] is not None}
        if not wanted:
            return {}
        # one query over the range of paths that share the scan's folder: far faster than asking path by path
        prefix = os.path.commonprefix([min(wanted), max(wanted)])  # noqa: RUF071 (a range of strings, not a folder)
        condition = f" AND {extra[0]} = ?" if extra else ""
        query = (
            f"SELECT path, size, mtime_ns, ctime_ns, {columns} FROM {table} WHERE path >= ? AND path <= ?{condition}"
        )
        found = {}
        single = "," not in columns  # one value per row, not a tuple
        try:
            for row in self.connection.execute(query, (prefix, prefix + "\U0010ffff", *(extra[1:] if extra else ()))):
                path = row[0]
                if path in wanted and row[1:4] == stamps[path]:
                    found[path] = row[4] if single else row[4:]
        except sqlite3.Error:
            return {}  # a damaged cache: read the files
        self.served.update(found)
        return found

    def _store(self, table: str, columns: tuple[str, ...], values: dict[str, tuple]) -> None:
        if self.connection is None or not values:
            return
        rows = [(path, *stamp, *row) for path, row in values.items() if (stamp := self.stamp(path)) is not None]
        names = ", ".join(("path", "size", "mtime_ns", "ctime_ns", *columns))
        marks = ", ".join("?" * (4 + len(columns)))
        try:
            with self.connection:  # one transaction: 100,000 rows in a fraction of a second
                self.connection.execute("BEGIN")
                self.connection.executemany(f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})", rows)
        except sqlite3.Error:
            pass  # full disk, read-only: the next scan reads the files again


def _info(row: tuple, stamp: Stamp) -> ImageInfo:
    """An ImageInfo from its row (INFO_FIELDS) and the file's stamp: SQLite stores the booleans as 0 and 1."""
    format, mode, width, height, orientation, bits, alpha, animated, grey = row
    return ImageInfo(format, mode, width, height, orientation, bits, bool(alpha), bool(animated),
                     None if grey is None else bool(grey), stamp[0], stamp[1])  # fmt: skip


def _signed(value: int) -> int:
    """An unsigned 64-bit hash as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
