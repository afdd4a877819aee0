"""The work folder of a detection job: results as they finish, so a killed run loses almost nothing.

``OUT.parts/`` (``OUT.shard-I-of-N.parts/`` for a shard) holds

- ``manifest.json``: the settings the results are made with (models by SHA-256, proposals,
  selection settings, group size), the input list's digest and the shard. Resuming with anything else is
  refused with one line, never silently mixed;
- ``part-NNNNN.jsonl``: one file per run, one line per image (``image_id``, ``key``, the image
  file's size and mtime, its COCO-results records or why it was skipped), a group's lines written
  with one ``write``. A line cut short by SIGKILL is ignored; a group is done when every image has
  a line made from the file as it is now, other than a skip for a transient reason (``"retry"``:
  an I/O error, memory running out), which the next run retries; the last line of an image wins.

At the end the lines are assembled, in ``image_id`` order, into the COCO-results JSON (written
atomically, formatted exactly as ``incdet.io.write_json`` writes it), each line read and parsed
once, from an index of offsets: a few numpy arrays by ``image_id`` (33 bytes an image, so a million
images cost 33 MB in the driver), filled by scanning the part files when a job resumes and by the
writer as it appends. Shards' folders are joined the same way (:mod:`incdet.engine.shards`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from incdet.engine.plan import Shard
from incdet.errors import InputError
from incdet.io import atomic_path, file_stamp, write_json
from incdet.postprocess.coco_results import to_coco_records
from incdet.structures import ImageRecord, ImageResult

FORMAT = "incdet.detect-work.v1"
MANIFEST = "manifest.json"


def work_folder(out: str | Path, shard: Shard = Shard()) -> Path:
    """Where the job writing ``out`` keeps its work: ``OUT.parts`` (a shard: ``OUT.shard-I-of-N.parts``)."""
    out = Path(out)
    return out.with_name(f"{out.name}{shard.suffix}.parts")


def inputs_digest(images: Sequence[ImageRecord]) -> dict[str, Any]:
    """The input list as a manifest records it: its length and the SHA-256 of its keys in order."""
    digest = hashlib.sha256("\n".join(r.key for r in images).encode()).hexdigest()
    return {"images": len(images), "sha256": digest}


def _stamp(path: Path | str) -> list[int] | None:
    stamp = file_stamp(path)
    return None if stamp is None else list(stamp)


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    old, new = _flat(old), _flat(new)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = [f"{k} {old.get(k)!r} (now {new.get(k)!r})" if len(repr(old.get(k))) + len(repr(new.get(k))) < 60 else k for k in keys]
    return ", ".join(shown)


class _Index:
    """Where each image's last line is, by ``image_id``: its part file (-1: none yet), offset and
    length there, the image file's (size, mtime_ns) stamp it was made from (-1, -1: none), and
    whether it records a skip to retry (a transient error)."""

    def __init__(self, size: int) -> None:
        self.part = np.full(size, -1, np.int32)
        self.offset = np.zeros(size, np.int64)
        self.length = np.zeros(size, np.int32)
        self.stamp = np.full((size, 2), -1, np.int64)
        self.retry = np.zeros(size, bool)

    def add(self, image_id: int, part: int, offset: int, length: int, stamp: list[int] | None, retry: bool = False) -> None:
        self.part[image_id], self.offset[image_id], self.length[image_id] = part, offset, length
        self.stamp[image_id] = stamp if stamp is not None else (-1, -1)
        self.retry[image_id] = retry

    def has(self, image_id: int, stamp: list[int] | None) -> bool:
        return (bool(self.part[image_id] >= 0) and not self.retry[image_id] and stamp is not None
                and self.stamp[image_id].tolist() == stamp)

    @property
    def count(self) -> int:
        return int((self.part >= 0).sum())


@dataclass
class Summary:
    """What a job's lines hold: images detected and skipped (one line each; ``retry`` of the skips were
    for a transient reason), kept-image warnings, the number of detections and the proposals per
    source (summed over images)."""

    images: int = 0
    skipped: list[str] = field(default_factory=list)
    retry: int = 0
    warnings: list[str] = field(default_factory=list)
    detections: int = 0
    proposals: Counter = field(default_factory=Counter)


class WorkFolder:
    """A job's work folder (see the module docstring); :meth:`open` creates or checks it."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._parts = sorted(self.path.glob("part-*.jsonl"))
        self._index = _Index(int(manifest["inputs"]["images"]))
        for number, part in enumerate(self._parts):
            self._scan(number, part)

    @classmethod
    def open(cls, path: str | Path, settings: dict[str, Any], images: Sequence[ImageRecord], shard: Shard) -> WorkFolder:
        path = Path(path)
        manifest = {"format": FORMAT, "settings": json.loads(json.dumps(settings)), "inputs": inputs_digest(images),
                    "shard": [shard.index, shard.count], "complete": False}
        stored = cls.read_manifest(path) if (path / MANIFEST).exists() else None
        if stored is None:
            path.mkdir(parents=True, exist_ok=True)
            write_json(path / MANIFEST, manifest)
            return cls(path, manifest)
        if stored["settings"] != manifest["settings"]:
            raise InputError(path, f"holds results made with other settings: {_differences(stored['settings'], manifest['settings'])}; "
                                   "run with the same settings to resume, or delete it to start afresh")
        if stored["inputs"] != manifest["inputs"] or stored["shard"] != manifest["shard"]:
            raise InputError(path, f"holds results for other input images ({stored['inputs']['images']} images, shard "
                                   f"{stored['shard'][0]}/{stored['shard'][1]}; now {len(images)}, shard {shard.index}/{shard.count}); "
                                   "run with the same images to resume, or delete it to start afresh")
        return cls(path, stored)

    @staticmethod
    def read_manifest(path: Path) -> dict[str, Any]:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path / MANIFEST, f"not a readable work-folder manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InputError(path / MANIFEST, f"not an incdet detect work folder (format is not {FORMAT})")
        return manifest

    def _scan(self, number: int, part: Path) -> None:
        offset = 0
        with open(part, "rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                    self._index.add(int(line["image_id"]), number, offset, len(raw), line.get("stamp"), bool(line.get("retry")))
                except (ValueError, KeyError, TypeError, IndexError):
                    pass  # a line cut short by a kill: its group is redone
                offset += len(raw)

    def done(self, group: Iterable[ImageRecord]) -> bool:
        """Whether every image of ``group`` has a line made from its file as it is now."""
        return all(self._index.has(r.image_id, _stamp(r.path)) for r in group)

    @property
    def count(self) -> int:
        return self._index.count

    def writer(self, classes: Sequence[str]) -> PartWriter:
        path = self.path / f"part-{len(self._parts):05d}.jsonl"
        self._parts.append(path)
        return PartWriter(path, classes, self._index, len(self._parts) - 1)

    def lines(self) -> Iterator[dict[str, Any]]:
        """Every image's (last) line, in ``image_id`` order, one at a time."""
        yield from _read_lines([(self._parts, self._index)])

    def finish(self, out: Path | None) -> Summary:
        """Assemble the whole job's results into ``out`` and remove this folder; a shard (``out``
        None): mark the folder complete, for :func:`incdet.engine.shards.join_shards`. One pass over the lines, whose summary is
        returned; when every image was skipped nothing is written and the folder stays. The folder
        also stays when images were skipped for a transient reason, so that running the job again
        retries just those."""
        if out is not None:
            summary = assemble(self.lines(), out, require_images=True)
            if (summary.images or not summary.skipped) and not summary.retry:
                shutil.rmtree(self.path)
            return summary
        summary = assemble(self.lines(), None)
        if summary.images or not summary.skipped:
            write_json(self.path / MANIFEST, {**self.manifest, "complete": True})
        return summary


def _read_lines(folders: list[tuple[list[Path], _Index]]) -> Iterator[dict[str, Any]]:
    """The lines of every image of ``folders`` (shards of one job: each image in one of them), in
    ``image_id`` order."""
    handles: dict[tuple[int, int], Any] = {}
    parts = np.stack([index.part for _, index in folders])  # (folders, images)
    owner = parts.argmax(axis=0)  # the one folder with a line for each image (parts are -1 elsewhere)
    try:
        for image_id in np.flatnonzero(parts.max(axis=0) >= 0).tolist():
            n = int(owner[image_id])
            index = folders[n][1]
            key = (n, int(index.part[image_id]))
            if key not in handles:
                handles[key] = open(folders[n][0][key[1]], "rb")
            handles[key].seek(int(index.offset[image_id]))
            yield json.loads(handles[key].read(int(index.length[image_id])))
    finally:
        for handle in handles.values():
            handle.close()


class _NothingProcessed(Exception):
    pass


def assemble(lines: Iterable[dict[str, Any]], out: Path | None, require_images: bool = False) -> Summary:
    """Write the records of ``lines`` (in order) to ``out`` as ``write_json`` would, and summarise them.
    ``require_images``: leave ``out`` as it was when every line is a skipped image."""
    summary = Summary()
    if out is None:
        for line in lines:
            _count(summary, line)
        return summary
    try:
        with atomic_path(out) as tmp, open(tmp, "w") as f:
            first = True
            for line in lines:
                _count(summary, line)
                for record in line.get("records", []):
                    f.write(("[\n" if first else ",\n") + _record_text(record))
                    first = False
            f.write("[]\n" if first else "\n]\n")
            if require_images and not summary.images and summary.skipped:
                raise _NothingProcessed
    except _NothingProcessed:
        pass
    return summary


def _record_text(record: dict[str, Any]) -> str:
    """``json.dumps([record], indent=1)``'s lines for ``record`` (a flat mapping of scalars and lists
    of scalars, as COCO results are), without its slow pure-Python indenting encoder: 5x faster,
    byte for byte the same (``tests/test_engine.py``)."""
    fields = []
    for key, value in record.items():
        if isinstance(value, list):
            body = ",\n".join("   " + _scalar(v) for v in value)
            fields.append(f"  {_scalar(key)}: [\n{body}\n  ]" if value else f"  {_scalar(key)}: []")
        else:
            fields.append(f"  {_scalar(key)}: {_scalar(value)}")
    return " {\n" + ",\n".join(fields) + "\n }" if fields else " {}"


def _scalar(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value)


def _count(summary: Summary, line: dict[str, Any]) -> None:
    summary.warnings += line.get("warnings", [])
    if "skipped" in line:
        summary.skipped.append(line["skipped"])
        summary.retry += bool(line.get("retry"))
        return
    summary.images += 1
    summary.detections += len(line["records"])
    summary.proposals.update(line.get("proposals", {}))


class PartWriter:
    """Appends each group's lines to a new part file (one ``write`` and flush per group), noting
    each line's place in the folder's index."""

    def __init__(self, path: Path, classes: Sequence[str], index: _Index | None = None, number: int = 0) -> None:
        self.path = path
        self.classes = tuple(classes)
        self.index, self.number = index, number
        self._file: TextIO | None = None
        self._offset = 0

    def write(self, results: Sequence[ImageResult]) -> None:
        if self._file is None:
            self._file = open(self.path, "xb")
        lines = [(r.image.image_id, self._line(r)) for r in results]
        encoded = [(image_id, (json.dumps(line) + "\n").encode(), line) for image_id, line in lines]
        self._file.write(b"".join(raw for _, raw, _ in encoded))
        self._file.flush()
        for image_id, raw, line in encoded:
            if self.index is not None:
                self.index.add(image_id, self.number, self._offset, len(raw), line["stamp"], bool(line.get("retry")))
            self._offset += len(raw)

    def _line(self, result: ImageResult) -> dict[str, Any]:
        record = result.image
        line: dict[str, Any] = {"image_id": record.image_id, "key": record.key, "stamp": _stamp(record.path)}
        if result.warnings:
            line["warnings"] = result.warnings
        if result.error is not None:
            return {**line, "skipped": result.error, **({"retry": True} if result.transient else {})}
        line["proposals"] = result.proposals.counts() if result.proposals is not None else {}
        line["records"] = to_coco_records(result.detections, record.image_id, record.key, self.classes)
        return line

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def join_work_folders(folders: Sequence[Path], manifests: Sequence[dict[str, Any]], out: Path) -> Summary:
    """Join the work folders of shards 1..N of one job (checked: :func:`incdet.engine.shards.check_shards`)
    into ``out``, equal to one run's output, in one pass over their lines (``out`` is left as it was
    when every image was skipped); shards holding the same image are refused."""
    opened = [WorkFolder(Path(f), m) for f, m in zip(folders, manifests)]
    both = np.flatnonzero((np.stack([w._index.part for w in opened]) >= 0).sum(axis=0) > 1)
    if len(both):
        raise InputError(folders[0], f"shards overlap: {len(both)} image(s) have results in two shards (image_id {both[0]})")
    return assemble(_read_lines([(w._parts, w._index) for w in opened]), out, require_images=True)
