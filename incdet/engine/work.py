"""The work folder of a detection job: results as they finish, so a killed run loses almost nothing.

``OUT.parts/`` (``OUT.shard-I-of-N.parts/`` for a shard) holds

- ``manifest.json``: the settings the results are made with (models by SHA-256, proposals,
  thresholds, group size), the input list's digest and the shard. Resuming with anything else is
  refused with one line, never silently mixed;
- ``part-NNNNN.jsonl``: one file per run, one line per image (``image_id``, ``key``, the image
  file's size and mtime, its COCO-results records or why it was skipped), a group's lines written
  with one ``write``. A line cut short by SIGKILL is ignored; a group is done when every image has
  a line made from the file as it is now; the last line of an image wins.

At the end the lines are assembled, in ``image_id`` order, into the COCO-results JSON (written
atomically, formatted exactly as ``incdet.io.write_json`` writes it), reading one line at a time
from an index of offsets, so memory stays flat in the number of images. Shards' folders are
merged the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from incdet.engine.plan import Shard
from incdet.errors import InputError
from incdet.io import atomic_path, write_json
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


def _stamp(path: Path) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


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


@dataclass(frozen=True)
class _Line:
    part: int
    offset: int
    length: int
    stamp: list[int] | None


@dataclass
class Summary:
    """What a job's lines hold: images detected and skipped (one line each), kept-image warnings, the
    number of detections and the proposals per source (summed over images)."""

    images: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    detections: int = 0
    proposals: Counter = field(default_factory=Counter)


class WorkFolder:
    """A job's work folder (see the module docstring); :meth:`open` creates or checks it."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._index: dict[int, _Line] = {}
        self._parts: list[Path] = []
        self._load_index()

    def _load_index(self) -> None:
        self._index, self._parts = {}, sorted(self.path.glob("part-*.jsonl"))
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
                    self._index[int(line["image_id"])] = _Line(number, offset, len(raw), line.get("stamp"))
                except (ValueError, KeyError, TypeError):
                    pass  # a line cut short by a kill: its group is redone
                offset += len(raw)

    def done(self, group: Iterable[ImageRecord]) -> bool:
        """Whether every image of ``group`` has a line made from its file as it is now."""
        return all(r.image_id in self._index and self._index[r.image_id].stamp == _stamp(r.path) for r in group)

    @property
    def count(self) -> int:
        return len(self._index)

    def writer(self, classes: Sequence[str]) -> PartWriter:
        return PartWriter(self.path / f"part-{len(self._parts):05d}.jsonl", classes)

    # -- reading back ----------------------------------------------------------------------------
    def lines(self) -> Iterator[dict[str, Any]]:
        """Every image's (last) line, in ``image_id`` order, one at a time (call again after writing)."""
        self._load_index()
        yield from _read_lines([(self._parts, self._index)])

    def summary(self) -> Summary:
        return assemble(self.lines(), None)

    def finish(self, out: Path | None) -> None:
        """The whole job: assemble the results into ``out`` and remove this folder. A shard (``out``
        None): mark the folder complete, for :func:`merge`."""
        if out is not None:
            assemble(self.lines(), out)
            shutil.rmtree(self.path)
        else:
            write_json(self.path / MANIFEST, {**self.manifest, "complete": True})


def _read_lines(folders: list[tuple[list[Path], dict[int, _Line]]]) -> Iterator[dict[str, Any]]:
    entries = sorted((image_id, n, line) for n, (_, index) in enumerate(folders) for image_id, line in index.items())
    handles: dict[tuple[int, int], Any] = {}
    try:
        for _, n, line in entries:
            key = (n, line.part)
            if key not in handles:
                handles[key] = open(folders[n][0][line.part], "rb")
            handles[key].seek(line.offset)
            yield json.loads(handles[key].read(line.length))
    finally:
        for handle in handles.values():
            handle.close()


def assemble(lines: Iterable[dict[str, Any]], out: Path | None) -> Summary:
    """Write the records of ``lines`` (in order) to ``out`` as ``write_json`` would, and summarise them."""
    summary = Summary()
    if out is None:
        for line in lines:
            _count(summary, line)
        return summary
    with atomic_path(out) as tmp, open(tmp, "w") as f:
        first = True
        for line in lines:
            _count(summary, line)
            for record in line.get("records", []):
                _write_record(f, record, first)
                first = False
        f.write("[]\n" if first else "\n]\n")
    return summary


def _write_record(f: TextIO, record: dict[str, Any], first: bool) -> None:
    # json.dumps(records, indent=1) writes each record as json.dumps(record, indent=1) indented one space.
    f.write(("[\n" if first else ",\n") + textwrap.indent(json.dumps(record, indent=1), " "))


def _count(summary: Summary, line: dict[str, Any]) -> None:
    summary.warnings += line.get("warnings", [])
    if "skipped" in line:
        summary.skipped.append(line["skipped"])
        return
    summary.images += 1
    summary.detections += len(line["records"])
    summary.proposals.update(line.get("proposals", {}))


class PartWriter:
    """Appends each group's lines to a new part file (one ``write`` and flush per group)."""

    def __init__(self, path: Path, classes: Sequence[str]) -> None:
        self.path = path
        self.classes = tuple(classes)
        self._file: TextIO | None = None

    def write(self, results: Sequence[ImageResult]) -> None:
        if self._file is None:
            self._file = open(self.path, "x")
        self._file.write("".join(json.dumps(self._line(r)) + "\n" for r in results))
        self._file.flush()

    def _line(self, result: ImageResult) -> dict[str, Any]:
        record = result.image
        line: dict[str, Any] = {"image_id": record.image_id, "key": record.key, "stamp": _stamp(record.path)}
        if result.warnings:
            line["warnings"] = result.warnings
        if result.error is not None:
            return {**line, "skipped": result.error}
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


def merge(folders: Sequence[Path], out: Path) -> Summary:
    """Join the complete work folders of shards 1..N of one job into ``out``, equal to one run's output."""
    manifests = [WorkFolder.read_manifest(Path(f)) for f in folders]
    first = manifests[0]
    for folder, manifest in zip(folders, manifests):
        if manifest["settings"] != first["settings"] or manifest["inputs"] != first["inputs"]:
            raise InputError(folder, f"is a shard of another job than {folders[0]} (other settings or input images)")
        if not manifest.get("complete"):
            raise InputError(folder, f"shard {manifest['shard'][0]}/{manifest['shard'][1]} is not finished; run it to the end first")
    count = first["shard"][1]
    shards = sorted(m["shard"][0] for m in manifests)
    if any(m["shard"][1] != count for m in manifests) or shards != list(range(1, count + 1)):
        raise InputError(folders[0], f"merge needs each of the {count} shards once, got shards {shards} of "
                                     f"{sorted({m['shard'][1] for m in manifests})}")
    opened = [WorkFolder(Path(f), m) for f, m in zip(folders, manifests)]
    return assemble(_read_lines([(w._parts, w._index) for w in opened]), out)
