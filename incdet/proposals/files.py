"""Flat proposal files, for exchanging boxes with other tools: ``.npz`` (one float32 (N, 4) xyxy
array per image key, compact) or ``.json`` (``{key: [[x1, y1, x2, y2], ...]}``, readable anywhere).

A merged set's provenance (which stage proposed each box) goes beside such a file as
``NAME.sources.json`` (:func:`write_sources`). They are read and written whole, so incdet's own runs keep proposals in the per-image
:class:`incdet.proposals.store.ProposalStore`; these files are an import and export format.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from incdet.errors import InputError
from incdet.io import atomic_path, write_text
from incdet.structures import Proposals

SUFFIXES = (".npz", ".json")


def check_file_path(path: str | Path) -> Path:
    """Fail before hours of computing if the output format is unknown."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(path, f"proposal files must end in {' or '.join(SUFFIXES)}")
    return path


def save_proposals(path: str | Path, proposals: Mapping[str, np.ndarray]) -> None:
    """Write ``{image file name: (N, 4) xyxy boxes}`` atomically; the format follows the suffix."""
    path = check_file_path(path)
    arrays = {name: np.asarray(boxes, np.float32).reshape(-1, 4) for name, boxes in proposals.items()}
    if path.suffix.lower() == ".npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return
    # One image per line keeps big files diffable; str() of a float32 is its shortest exact form,
    # so loading gives back the same float32 values.
    lines = [
        f"{json.dumps(name)}: {json.dumps([[float(str(v)) for v in box] for box in boxes])}"
        for name, boxes in arrays.items()
    ]
    write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


def _checked_boxes(path: Path, name: str, value: object) -> np.ndarray:
    try:
        boxes = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(path, f"entry {name!r}: boxes are not numbers") from None
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(path, f"entry {name!r}: expected a list of [x1, y1, x2, y2] boxes, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise InputError(path, f"entry {name!r}: boxes contain NaN or infinity")
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise InputError(path, f"entry {name!r}: a box has x2 < x1 or y2 < y1")
    return boxes


def load_proposals(path: str | Path) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_proposals` (or by hand) into float32 (N, 4) arrays."""
    path = check_file_path(path)
    if not path.is_file():
        raise InputError(path, "no such proposal file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                raw = {name: data[name] for name in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise InputError(path, f"not a readable .npz proposal file ({exc})") from None
    else:
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise InputError(path, "expected a JSON object {file_name: [[x1, y1, x2, y2], ...]}")
    return {name: _checked_boxes(path, name, value) for name, value in raw.items()}


def sources_path(out: Path) -> Path:
    """Where the provenance of ``out``'s merged boxes is written: ``NAME.sources.json`` beside it."""
    return out.with_name(f"{out.stem}.sources.json")


def write_sources(path: Path, merged: Mapping[str, Proposals]) -> None:
    """``{image key: {"counts": {...}, "source": [one of SOURCES per box, in box order]}}``, one image a line."""
    lines = [f"{json.dumps(key)}: {json.dumps({'counts': p.counts(), 'source': p.source_names()})}" for key, p in merged.items()]
    write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")
