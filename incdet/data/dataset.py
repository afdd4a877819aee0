"""One entry point for ground truth in any of the three formats incdet reads.

``load_dataset(path)`` recognises a PASCAL-VOC annotation folder (or a VOC year folder with
``ImageSets/Main``), an ILSVRC-DET devkit root (or one of its image-set files / annotation
folders) and a COCO instances JSON, and returns the same thing for all of them: the class
list, one :class:`Annotation` per image and a :class:`SkipReport` of what was left out.
Bad items are skipped and reported with their file and object, never silently dropped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from incdet.data.annotation import Annotation
from incdet.data.classes import read_class_list
from incdet.data.voc import read_voc_xml
from incdet.errors import InputError

# ILSVRC's annotation tool wrote about a thousand boxes whose right/bottom index equals the
# image size (one past the last pixel); the devkit evaluates them as they are, so a box may
# reach this far past the image edge before it counts as "outside the image".
EDGE_TOLERANCE_PX = 1.0

SKIP_KINDS = ("annotation file", "image", "object", "detection", "line")


@dataclass
class Skip:
    kind: str  # one of SKIP_KINDS, or "warning" for an item kept as it is
    message: str  # "path: problem", one line
    count: int = 1  # how many items of ``kind`` this line stands for


@dataclass
class SkipReport:
    """Everything a reader or the evaluator skipped (or kept with a warning), one line each."""

    items: list[Skip] = field(default_factory=list)

    def skip(self, kind: str, path: str | Path | None, problem: str, count: int = 1) -> None:
        if kind not in SKIP_KINDS:
            raise ValueError(f"unknown skip kind {kind!r}")
        self.items.append(Skip(kind, str(InputError(path, problem)), count))

    def warn(self, path: str | Path | None, problem: str) -> None:
        self.items.append(Skip("warning", str(InputError(path, problem)), 1))

    def extend(self, other: "SkipReport") -> None:
        self.items.extend(other.items)

    def counts(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for item in self.items:
            totals[item.kind] += item.count
        return dict(totals)

    def summary(self) -> str:
        """E.g. ``skipped 2 annotation files, 5 objects; 1 warning`` or ``nothing skipped``."""
        counts = self.counts()
        parts = [f"{counts[k]} {k}{'s' if counts[k] != 1 else ''}" for k in SKIP_KINDS if counts.get(k)]
        text = f"skipped {', '.join(parts)}" if parts else "nothing skipped"
        if counts.get("warning"):
            text += f"; {counts['warning']} warning{'s' if counts['warning'] != 1 else ''} (items kept)"
        return text

    def to_json(self) -> dict:
        return {"summary": self.summary(), "counts": self.counts(),
                "items": [{"kind": s.kind, "count": s.count, "message": s.message} for s in self.items]}


@dataclass
class Dataset:
    """Ground truth of one split, whatever format it came from."""

    format: str  # "voc", "ilsvrc" or "coco"
    classes: list[str]
    annotations: list[Annotation]
    skipped: SkipReport
    image_dir: Path | None = None  # ``image_dir / ann.filename`` is the image
    display_names: dict[str, str] = field(default_factory=dict)  # e.g. synset id -> "bird"
    category_ids: dict[int, str] = field(default_factory=dict)  # detection category_id -> class
    ignored: dict[str, frozenset[str]] = field(default_factory=dict)  # image -> classes not evaluated
    classes_source: str = ""  # where the class list came from, for messages
    classes_inferred: bool = False  # True when no class list was found, only the labels seen

    def image_path(self, ann: Annotation) -> Path:
        if self.image_dir is None:
            raise InputError(ann.filename, f"{self.format} ground truth does not say where its images are")
        return self.image_dir / ann.filename


def box_problem(box: Sequence[float], width: float, height: float) -> str | None:
    """Why a continuous xyxy box cannot be evaluated, or None if it can."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return "non-finite coordinate"
    if x2 < x1 or y2 < y1:
        return "x2 < x1 or y2 < y1"
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return f"outside the {width:g}x{height:g} image"
    return None


def check_annotation(ann: Annotation, classes: Sequence[str] | None, report: SkipReport, source: str | Path) -> Annotation:
    """Drop (and report) objects that no evaluation can use: an unknown class, a non-finite
    box, ``x2 < x1`` / ``y2 < y1``, or a box outside the image (beyond EDGE_TOLERANCE_PX)."""
    if not len(ann.boxes):
        return ann
    allowed = None if classes is None else set(classes)
    keep = np.ones(len(ann.boxes), bool)
    for i, (box, label) in enumerate(zip(ann.boxes.tolist(), ann.labels)):
        if allowed is not None and label not in allowed:
            problem = f"class {label!r} is not in the class list"
        else:
            problem = box_problem(box, ann.width, ann.height)
        if problem is not None:
            coords = ", ".join(f"{v:g}" for v in box)
            report.skip("object", source, f"object {i} ({label}, continuous box [{coords}]): {problem}")
            keep[i] = False
    if keep.all():
        return ann
    return Annotation(ann.filename, ann.width, ann.height, ann.boxes[keep],
                      [label for label, k in zip(ann.labels, keep) if k], ann.difficult[keep])


def load_dataset(path: str | Path, split: str | None = None, classes: Sequence[str] | None = None,
                 image_dir: str | Path | None = None, blacklist: str | Path | None = None) -> Dataset:
    """Detect the format of ``path`` and read it (see the module docstring for what is recognised).

    ``split`` picks the image set of an ILSVRC devkit root or VOC year folder (default ``val``);
    ``classes`` overrides the class list the format provides; ``image_dir`` says where the
    images of a COCO JSON are (default: the JSON's folder); ``blacklist`` is the ILSVRC
    validation blacklist (default: found in the devkit's ``data`` folder, if any).
    """
    from incdet.data import coco, ilsvrc  # imported here because they build on this module

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if blacklist is not None and not Path(blacklist).is_file():
        raise InputError(blacklist, "blacklist file not found")
    located = ilsvrc.locate(path, split)
    if path.is_file() and path.suffix.lower() == ".json":
        dataset = coco.read_coco_dataset(path, image_dir=image_dir)
    elif located is not None:
        root, split_name, subset = located
        dataset = ilsvrc.read_ilsvrc_dataset(root, split_name, subset, Path(blacklist) if blacklist else None)
    elif path.is_dir():
        dataset = _read_voc(path, split)
    else:
        raise InputError(path, "not a recognised ground truth: expected a VOC annotation folder, "
                               "an ILSVRC-DET devkit root or image-set file, or a COCO .json")
    if classes is not None:
        dataset = _with_classes(dataset, list(classes), f"given class list ({len(classes)} classes)")
    return dataset


def _with_classes(dataset: Dataset, classes: list[str], source: str) -> Dataset:
    report = dataset.skipped
    annotations = [check_annotation(a, classes, report, a.filename) for a in dataset.annotations]
    return Dataset(dataset.format, classes, annotations, report, dataset.image_dir, dataset.display_names,
                   {i + 1: name for i, name in enumerate(classes)}, dataset.ignored, source, False)


def _find_classes_txt(folder: Path) -> Path | None:
    """``classes.txt`` in the annotation folder, its parent, or its parent's parent (the demo
    layout keeps it in ``DIR/classes.txt`` next to ``DIR/test/annotations``)."""
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / "classes.txt").is_file():
            return candidate / "classes.txt"
    return None


def _read_voc(path: Path, split: str | None) -> Dataset:
    report = SkipReport()
    if (path / "Annotations").is_dir() and (path / "ImageSets" / "Main").is_dir():
        ann_dir, image_dir = path / "Annotations", path / "JPEGImages"
        set_file = path / "ImageSets" / "Main" / f"{split or 'val'}.txt"
        if not set_file.is_file():
            raise InputError(set_file, "VOC image-set file not found (choose the split with --split)")
        ids = [line.split()[0] for line in set_file.read_text().splitlines() if line.strip()]
        files = [ann_dir / f"{i}.xml" for i in ids]
    else:
        ann_dir = path
        files = sorted(path.glob("*.xml"))
        if not files:
            raise InputError(path, "no .xml annotation files in this folder")
        image_dir = next((path.parent / n for n in ("images", "JPEGImages") if (path.parent / n).is_dir()), path.parent)
    classes_txt = _find_classes_txt(ann_dir)
    classes = read_class_list(classes_txt) if classes_txt else None
    annotations, seen = [], set()
    for xml in files:
        try:
            ann = read_voc_xml(xml)
        except InputError as exc:
            report.skip("annotation file", exc.path, exc.problem)
            continue
        if ann.filename in seen:
            report.skip("annotation file", xml, f"a second annotation for image {ann.filename!r}")
            continue
        seen.add(ann.filename)
        annotations.append(check_annotation(ann, classes, report, xml))
    inferred = classes is None
    if inferred:
        classes = sorted({label for ann in annotations for label in ann.labels})
    source = "labels found in the annotations" if inferred else str(classes_txt)
    return Dataset("voc", classes, annotations, report, image_dir, {}, {i + 1: c for i, c in enumerate(classes)},
                   {}, source, inferred)
