"""The proposal store: every image's proposals in one SQLite file, written as they are computed.

Selective search costs about a second per image, so a dataset's proposals are computed once and
read many times: by every epoch of region training (one image at a time, from DataLoader workers)
and by detection. The store is the one form they share:

- **per image**: a row per image key (its path relative to the dataset or input folder), so a
  reader fetches only the boxes it needs and memory does not grow with the number of images;
- **appendable and resumable**: each row is committed when its image is done (SQLite's journal
  makes the commit atomic), so a killed run keeps everything it finished and a rerun adds only
  what is missing;
- **self-describing**: the settings the boxes were made with are stored once, and opening the
  store to add boxes made with other settings is refused, never silently mixed;
- **stale-proof**: each row keeps the image file's size and modification time, so a regenerated
  image is searched again rather than given another image's boxes.

SQLite (Python's standard library) gives all of that with random access and concurrent readers;
a folder of one file per image would cost a million inodes on ILSVRC-DET, and one ``.npz`` must
be rewritten whole for every image added. Boxes are stored as float32 (N, 4) xyxy pixels, sources
as uint8 indices into :data:`incdet.structures.SOURCES`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from incdet.boxes import clip_and_check
from incdet.errors import InputError
from incdet.io import file_stamp
from incdet.structures import Proposals

SUFFIX = ".db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proposals (
    key TEXT PRIMARY KEY, boxes BLOB NOT NULL, source BLOB NOT NULL,
    width INTEGER, height INTEGER, file_size INTEGER, mtime_ns INTEGER, seconds REAL
);
"""


@dataclass(frozen=True)
class FileStamp:
    """Size and modification time of an image file: if either changes, its stored boxes are stale."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | Path) -> FileStamp:
        stamp = file_stamp(path)
        if stamp is None:
            raise FileNotFoundError(f"{path}: gone")
        return cls(*stamp)


@dataclass(frozen=True)
class StoredProposals:
    """One image's row: its proposals, the image size they were made at, and what it cost."""

    proposals: Proposals
    width: int | None
    height: int | None
    stamp: FileStamp | None
    seconds: float | None


def fit_stored(proposals: Proposals, width: int, height: int, path: str | Path, source: str,
               made_for: tuple[int | None, int | None] = (None, None)) -> tuple[Proposals, list[str]]:
    """An image's stored proposals (from ``source``, a store or file, made for a ``made_for`` (width,
    height) image when it says) fitted to the ``width`` x ``height`` image at ``path``, as detection
    and region training both use them: clipped to it, boxes no clipping can save dropped, each
    repair a warning line; proposals made for an image of another size are refused (InputError)."""
    if all(made_for) and tuple(made_for) != (width, height):
        raise InputError(path, f"its proposals in {source} were made for a {made_for[0]}x{made_for[1]} image, this one is {width}x{height}")
    boxes, warnings = proposals.boxes, []
    far = ((boxes[:, :2] < -boxes.new_tensor([width, height])) | (boxes[:, 2:] > 2 * boxes.new_tensor([width, height]))).any(1)
    clipped, usable = clip_and_check(boxes, width, height)
    if far.any():
        warnings.append(str(InputError(path, f"{int(far.sum())} stored proposals reach far outside the {width}x{height} image; clipped to it")))
    if not usable.all():
        warnings.append(str(InputError(path, f"{int((~usable).sum())} stored proposals lie outside the {width}x{height} image "
                                             "or are not finite; dropped")))
    return Proposals(clipped[usable], proposals.source[usable]), warnings


def is_store_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() == SUFFIX


class ProposalStore(Mapping[str, Proposals]):
    """Proposals per image key in the SQLite file ``path`` (see the module docstring).

    ``settings`` (JSON-serialisable) says how the boxes are made: a new store records them; an
    existing one must hold the same, else InputError names the differences. Without ``settings``
    the store is opened as it is (e.g. by a reader). ``readonly`` opens an existing file without
    ever writing to it. Read as a mapping, the store gives each key's :class:`Proposals`.

    A store can be pickled (to DataLoader workers or Ray tasks): each process opens its own
    connection, as SQLite requires.
    """

    def __init__(self, path: str | Path, settings: Mapping[str, Any] | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if self.path.suffix.lower() != SUFFIX:
            raise InputError(self.path, f"a proposal store is a SQLite file ending in {SUFFIX}")
        if readonly and not self.path.is_file():
            raise InputError(self.path, "no such proposal store")
        if self.path.exists() and not self.path.is_file():
            raise InputError(self.path, "is not a file (a proposal store is one SQLite file)")
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        stored = self.settings
        if settings is not None:
            wanted = json.loads(json.dumps(dict(settings)))  # as it reads back: tuples become lists
            if not stored:
                self._write_settings(wanted)
            elif stored != wanted:
                changed = [f"{k} {stored.get(k)!r} (now {wanted.get(k)!r})" for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
                raise InputError(self.path, "holds proposals made with other settings: " + ", ".join(changed)
                                 + "; use another file or delete this one")

    # -- connection ---------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            try:
                if self.readonly:
                    connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    connection = sqlite3.connect(self.path, timeout=60)
                    connection.executescript(_SCHEMA)
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except (sqlite3.DatabaseError, OSError) as exc:
                raise InputError(self.path, f"not a readable proposal store ({exc})") from None
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:  # e.g. a file that is not SQLite, or a corrupt page
            raise InputError(self.path, f"not a readable proposal store ({exc})") from None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_connection": None, "_pid": -1}

    def close(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def __enter__(self) -> ProposalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings -----------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        if not self._query("SELECT name FROM sqlite_master WHERE type='table' AND name='settings'"):
            return {}
        return {name: json.loads(value) for name, value in self._query("SELECT name, value FROM settings")}

    def _write_settings(self, settings: dict[str, Any]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in settings.items()])

    # -- rows ---------------------------------------------------------------------------------
    @property
    def job(self) -> dict[str, Any]:
        """What the ``incdet propose`` run filling this store recorded of itself: its input images'
        digest, its shard [I, N] and whether it ran to the end (``--merge`` checks them)."""
        if not self._query("SELECT name FROM sqlite_master WHERE type='table' AND name='job'"):
            return {}
        return {name: json.loads(value) for name, value in self._query("SELECT name, value FROM job")}

    def record_job(self, **values: Any) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO job VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()])

    def put(self, key: str, proposals: Proposals, *, width: int | None = None, height: int | None = None,
            stamp: FileStamp | None = None, seconds: float | None = None) -> None:
        """Store (or replace) one image's proposals; committed before this returns."""
        boxes = np.ascontiguousarray(proposals.boxes.cpu().numpy(), np.float32)
        source = np.ascontiguousarray(proposals.source.cpu().numpy(), np.uint8)
        row = (key, boxes.tobytes(), source.tobytes(), width, height,
               stamp.size if stamp else None, stamp.mtime_ns if stamp else None, seconds)
        with self._db() as db:  # one transaction: committed on success
            db.execute("INSERT OR REPLACE INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def entry(self, key: str) -> StoredProposals | None:
        """One image's row, or None if the store has no boxes for ``key``."""
        rows = self._query("SELECT boxes, source, width, height, file_size, mtime_ns, seconds FROM proposals WHERE key = ?", (key,))
        if not rows:
            return None
        boxes, source, width, height, size, mtime, seconds = rows[0]
        if len(boxes) % 16 or len(source) * 16 != len(boxes):
            raise InputError(self.path, f"entry {key!r} is corrupt ({len(boxes)} bytes of boxes, {len(source)} sources)")
        array = np.frombuffer(boxes, np.float32).reshape(-1, 4).copy()
        if not np.isfinite(array).all() or (array[:, 2:] < array[:, :2]).any():
            raise InputError(self.path, f"entry {key!r} has a non-finite box or one with x2 < x1 or y2 < y1")
        proposals = Proposals(array, np.frombuffer(source, np.uint8).copy())
        stamp = FileStamp(size, mtime) if size is not None and mtime is not None else None
        return StoredProposals(proposals, width, height, stamp, seconds)

    def is_current(self, key: str, path: str | Path) -> bool:
        """True if ``key`` has boxes made from the file at ``path`` as it is now (same size and mtime)."""
        rows = self._query("SELECT file_size, mtime_ns FROM proposals WHERE key = ?", (key,))
        if not rows:
            return False
        size, mtime = rows[0]
        return size is None or FileStamp(size, mtime) == FileStamp.of(path)

    def identity(self) -> dict[str, Any]:
        """What a job using this store records to recognise it on resume: its settings, its row count and
        a digest of every row's key, image-file stamp and box bytes. Unlike a hash of the file it reads
        no boxes (a store for ILSVRC-DET is about 15 GB) and does not change when SQLite reorganises pages."""
        digest = hashlib.sha256()
        rows = 0
        try:
            for key, size, mtime, length in self._db().execute("SELECT key, file_size, mtime_ns, length(boxes) FROM proposals ORDER BY key"):
                digest.update(f"{key}\t{size}\t{mtime}\t{length}\n".encode())
                rows += 1
        except sqlite3.DatabaseError as exc:
            raise InputError(self.path, f"not a readable proposal store ({exc})") from None
        return {"settings": self.settings, "rows": rows, "rows_sha256": digest.hexdigest()}

    def __getitem__(self, key: str) -> Proposals:
        entry = self.entry(key)
        if entry is None:
            raise KeyError(key)
        return entry.proposals

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._query("SELECT 1 FROM proposals WHERE key = ?", (key,)))

    def __iter__(self) -> Iterator[str]:
        return iter([key for (key,) in self._query("SELECT key FROM proposals ORDER BY key")] if self.path.is_file() else [])

    def __len__(self) -> int:
        return self._query("SELECT count(*) FROM proposals")[0][0] if self.path.is_file() else 0

    def update_from(self, other: ProposalStore) -> int:
        """Copy every row of ``other`` (e.g. a shard's store, made with the same settings) into this
        store; returns how many rows were copied."""
        if other.settings != self.settings:
            raise InputError(other.path, f"was made with other settings than {self.path}; cannot merge them")
        rows = other._query("SELECT * FROM proposals")
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)
