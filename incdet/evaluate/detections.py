"""Detections JSON (COCO-results records) read, checked and turned into arrays.

A record is ``{"file_name", "category_name" and/or "category_id", "bbox": [x, y, w, h],
"score"}``. Records are matched to ground-truth images by ``file_name`` (exactly, else by the
name without folder and extension when that is unambiguous, so ``0003.jpg`` finds
``images/0003.JPEG``). Every record that cannot be evaluated is skipped and reported with
its position in the list; nothing is dropped silently.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from pathlib import PurePath
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from incdet.data.checks import EDGE_TOLERANCE_PX
from incdet.data.coco import load_json
from incdet.errors import InputError
from incdet.structures import SkipReport

_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _is_number(value: Any) -> bool:
    """JSON numbers, and numpy scalars from in-process callers; not booleans."""
    return type(value) is float or type(value) is int or (
        isinstance(value, _NUMBER_TYPES) and not isinstance(value, (bool, np.bool_)))


@dataclass
class DetectionArrays:
    """The usable detections, one row each; ``record`` is the position in the input list."""

    record: np.ndarray  # (D,) int64
    image: np.ndarray  # (D,) int64, index into the ground-truth images
    label: np.ndarray  # (D,) int64, index into the class list
    boxes: np.ndarray  # (D, 4) float64 continuous xyxy
    scores: np.ndarray  # (D,) float64


def read_detections(path: str) -> list[dict]:
    """The records of a detections JSON file (a list); InputError if it is not one."""
    records = load_json(path)
    if not isinstance(records, list):
        raise InputError(path, f"expected a JSON list of detection records, found {type(records).__name__}")
    return records


class ImageLookup:
    """Ground-truth image index of a detection's ``file_name``."""

    def __init__(self, filenames: Sequence[str]) -> None:
        self.exact = {name: i for i, name in enumerate(filenames)}
        stems: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(filenames):
            stems[_stem(name)].append(i)
        self.stems = {stem: idx[0] for stem, idx in stems.items() if len(idx) == 1}
        self.cache: dict[str, int | None] = {}

    def __call__(self, file_name: str) -> int | None:
        found = self.exact.get(file_name)
        if found is None:
            if file_name not in self.cache:
                self.cache[file_name] = self.stems.get(_stem(file_name))
            found = self.cache[file_name]
        return found


def _stem(name: str) -> str:
    return PurePath(name.replace("\\", "/")).stem


def detection_arrays(records: Sequence[Any], filenames: Sequence[str], sizes: np.ndarray, classes: Sequence[str],
                     category_ids: Mapping[int, str] | None, report: SkipReport, source: str) -> DetectionArrays:
    """Check every record and keep the usable ones.

    ``sizes`` is (images, 2) width/height, for the out-of-image warning. ``category_ids`` maps
    a record's ``category_id`` to a class name (default: 1-based index into ``classes``); a
    record's ``category_name``, when present, wins, and disagreements are reported.
    """
    class_index = {name: i for i, name in enumerate(classes)}
    id_to_class = dict(category_ids) if category_ids else {i + 1: name for i, name in enumerate(classes)}
    lookup = ImageLookup(filenames)
    fast = _well_formed(records, lookup.exact, class_index, id_to_class)
    checker = _RecordChecker(lookup, class_index, id_to_class, report, source)
    slow = np.arange(len(records)) if fast is None else np.flatnonzero(~fast.ok)
    for i in slow.tolist():
        checker.check(i, records[i])
    checker.finish()
    parts = [checker.arrays()]
    if fast is not None:
        ok = fast.ok
        parts.append(DetectionArrays(np.flatnonzero(ok), fast.image[ok], fast.label[ok], fast.boxes[ok], fast.scores[ok]))
    arrays = DetectionArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                               ("record", "image", "label", "boxes", "scores")))
    order = np.argsort(arrays.record, kind="stable")
    arrays = DetectionArrays(arrays.record[order], arrays.image[order], arrays.label[order], arrays.boxes[order],
                             arrays.scores[order])
    return _check_boxes(arrays, filenames, sizes, report, source)


@dataclass
class _Columns:
    ok: np.ndarray  # records the columns below hold correctly; the rest go to _RecordChecker
    image: np.ndarray
    label: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


_PLAIN = (int, float, np.float64, np.float32, np.int64, np.int32)


def _well_formed(records: Sequence[Any], exact: dict[str, int], class_index: dict[str, int],
                 id_to_class: dict[int, str]) -> _Columns | None:
    """Column-wise checks for the common case (a list of well-formed records), several times
    faster than checking record by record; None if the list is too irregular for it."""
    plain = set(_PLAIN)
    try:
        if set(map(type, records)) != {dict}:
            return None
        file_names, bboxes, scores = (list(map(itemgetter(key), records)) for key in ("file_name", "bbox", "score"))
        names = [r.get("category_name") for r in records]
        ids = [r.get("category_id") for r in records]
        if set(map(type, file_names)) != {str} or set(map(type, bboxes)) != {list} or set(map(len, bboxes)) != {4} \
                or not set(map(type, scores)) <= plain or not set(map(type, chain.from_iterable(bboxes))) <= plain:
            return None
        image = np.fromiter(map(exact.get, file_names, repeat(-1)), np.int64, len(records))
        from_ids = list(map(id_to_class.get, ids))  # TypeError if some id is unhashable: go slow
        label = np.fromiter((class_index.get(n if n is not None else c, -1) for n, c in zip(names, from_ids)),
                            np.int64, len(records))
        consistent = np.fromiter((n is None or c is None or n == c for n, c in zip(names, from_ids)), bool, len(records))
        consistent &= np.fromiter((c is None or type(c) is int for c in ids), bool, len(records))
        boxes = np.fromiter(chain.from_iterable(bboxes), np.float64, 4 * len(records)).reshape(-1, 4)
        score = np.fromiter(scores, np.float64, len(records))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    ok = (image >= 0) & (label >= 0) & consistent & np.isfinite(score)
    return _Columns(ok, image, label, boxes, score)


class _RecordChecker:
    """Record-by-record checks with a precise message for each record that fails one."""

    def __init__(self, lookup: ImageLookup, class_index: dict[str, int], id_to_class: dict[int, str],
                 report: SkipReport, source: str) -> None:
        self.lookup, self.class_index, self.id_to_class = lookup, class_index, id_to_class
        self.report, self.source = report, source
        self.unknown_images: dict[str, list[int]] = defaultdict(list)
        self.disagree: list[str] = []
        self.rows: list[tuple[int, int, int, list, float]] = []

    def skip(self, i: int, problem: str) -> None:
        self.report.skip("detection", self.source, f"detection #{i}{problem}")

    def check(self, i: int, r: Any) -> None:
        if type(r) is not dict:
            return self.skip(i, ": not a JSON object")
        file_name, bbox, score = r.get("file_name"), r.get("bbox"), r.get("score")
        name, cid = r.get("category_name"), r.get("category_id")
        if type(file_name) is not str:
            return self.skip(i, ": missing or non-string 'file_name'")
        image = self.lookup(file_name)
        if image is None:
            self.unknown_images[file_name].append(i)
            return None
        if name is not None:
            label = self.class_index.get(name) if type(name) is str else None
            if label is not None and cid is not None and self.id_to_class.get(cid if _is_number(cid) else None) != name:
                self.disagree.append(f"#{i}: category_id {cid!r} is {self.id_to_class.get(cid)!r} here, "
                                     f"category_name says {name!r}")
        else:
            label = self.class_index.get(self.id_to_class.get(int(cid))) if _is_number(cid) and int(cid) == cid else None
        if label is None:
            what = f"category_name {name!r}" if name is not None else f"category_id {cid!r}"
            return self.skip(i, f" ({file_name}): {what} is not a known class")
        if type(bbox) is not list or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            return self.skip(i, f" ({file_name}): 'bbox' must be four numbers [x, y, w, h]")
        if not _is_number(score) or not math.isfinite(score):
            return self.skip(i, f" ({file_name}): score {score!r} is not a finite number")
        self.rows.append((i, image, label, bbox, score))
        return None

    def finish(self) -> None:
        for file_name, idx in self.unknown_images.items():
            more = ", ..." if len(idx) > 1 else ""
            self.report.skip("detection", self.source, f"{len(idx)} detection(s) (#{idx[0]}{more}) for image "
                                                       f"{file_name!r}, which is not in the ground truth", count=len(idx))
        if self.disagree:
            self.report.warn(self.source, f"category_id and category_name disagree in {len(self.disagree)} "
                                          f"detection(s), names used (the class lists differ?); first: {self.disagree[0]}")

    def arrays(self) -> DetectionArrays:
        rec, img, lab, boxes, scores = zip(*self.rows) if self.rows else ((), (), (), (), ())
        return DetectionArrays(np.array(rec, np.int64), np.array(img, np.int64), np.array(lab, np.int64),
                               np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64))


def _check_boxes(d: DetectionArrays, filenames: Sequence[str], sizes: np.ndarray, report: SkipReport,
                 source: str) -> DetectionArrays:
    """Skip non-finite or negative-size boxes, turn xywh into xyxy, warn about boxes outside."""
    x, y, w, h = d.boxes.T
    good = np.isfinite(d.boxes).all(axis=1) & (w >= 0) & (h >= 0)
    for k in np.flatnonzero(~good):
        problem = "non-finite coordinate" if not np.isfinite(d.boxes[k]).all() else "negative width or height (x2 < x1)"
        report.skip("detection", source, f"detection #{d.record[k]} ({filenames[d.image[k]]}): bbox "
                                         f"{d.boxes[k].tolist()}: {problem}")
    d = DetectionArrays(d.record[good], d.image[good], d.label[good], d.boxes[good].copy(), d.scores[good])
    d.boxes[:, 2:] += d.boxes[:, :2]  # xywh -> xyxy
    warn_outside(d, filenames, sizes, report, source)
    outside = np.flatnonzero((d.scores < 0) | (d.scores > 1))
    if len(outside):  # a COCO-results score is a probability; these may be raw scores, or the wrong field
        k = outside[0]
        report.warn(source, f"{len(outside)} detection score(s) outside [0, 1], kept (AP uses only their order); "
                            f"first: detection #{d.record[k]} ({filenames[d.image[k]]}) score {d.scores[k]:g}")
    return d


def warn_outside(d: DetectionArrays, filenames: Sequence[str], sizes: np.ndarray, report: SkipReport,
                 source: str, name: Callable[[int], str] = "detection #{}".format) -> None:
    """Warn about (and keep) continuous xyxy boxes reaching beyond EDGE_TOLERANCE_PX outside
    their image: they are simply false positives unless they still overlap an object.
    ``name(record)`` says which detection it is (default ``detection #<record>``)."""
    width, height = sizes[d.image, 0], sizes[d.image, 1]
    tol = EDGE_TOLERANCE_PX
    outside = ((d.boxes[:, 0] < -tol) | (d.boxes[:, 1] < -tol)
               | (d.boxes[:, 2] > width + tol) | (d.boxes[:, 3] > height + tol))
    for k in np.flatnonzero(outside):
        report.warn(source, f"{name(int(d.record[k]))} ({filenames[d.image[k]]}): box "
                            f"{[round(v, 2) for v in d.boxes[k].tolist()]} extends outside the "
                            f"{width[k]:g}x{height[k]:g} image (kept)")
