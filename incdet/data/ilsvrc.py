"""The ILSVRC-DET (2013/2014) devkit layout: images, XML annotations, image sets, blacklist.

Layout under the root (the Kaggle copy nests it one level deeper, in ``ILSVRC/``)::

    Data/DET/{train,val}/<entry>.JPEG            the images
    Annotations/DET/{train,val}/<entry>.xml      one XML per image (PASCAL-like)
    ImageSets/DET/val.txt                        "<entry> <image number>" per line
    ImageSets/DET/train_<k>.txt                  "<entry> 1" (has class k) or "<entry> -1" (has not)
    devkit/data/ILSVRC2014_det_validation_blacklist.txt   "<image number> <synset>" per line

``<entry>`` is a path without extension relative to the split folder, e.g.
``ILSVRC2012_val_00000001`` or ``ILSVRC2013_train/n01443537/n01443537_10007``.

Coordinates: ILSVRC boxes are 0-based *inclusive* pixel indices (a box covering the first
pixel column has ``xmin = 0``; the devkit's ``eval_det.m`` computes a width as
``xmax - xmin + 1``). PASCAL-VOC uses the same inclusive convention but 1-based. Both become
incdet's continuous coordinates with an exclusive far edge: ILSVRC ``[xmin, ymin, xmax+1,
ymax+1]``, VOC ``[xmin-1, ymin-1, xmax, ymax]``; either way ``x2 - x1`` is the devkit's width,
so overlaps and the small-object threshold come out exactly as in the devkit.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from incdet.data.checks import check_annotation
from incdet.data.records import Annotation, Dataset
from incdet.errors import InputError
from incdet.structures import SkipReport

CLASSES_FILE = Path(__file__).with_name("ilsvrc_det_classes.tsv")
IMAGE_SUFFIX = ".JPEG"
_PER_CLASS_LIST = re.compile(r"^(?P<split>.+)_(?P<index>\d+)$")


@dataclass(frozen=True)
class Synset:
    index: int  # 1-based ILSVRC2014_DET_ID
    wnid: str  # WordNet id, e.g. n01503061
    name: str  # e.g. "bird"


@lru_cache(maxsize=1)
def det_synsets() -> tuple[Synset, ...]:
    """The 200 ILSVRC-DET classes in devkit order (shipped as ``ilsvrc_det_classes.tsv``)."""
    rows = CLASSES_FILE.read_text().splitlines()[1:]
    return tuple(Synset(int(i), wnid, name) for i, wnid, name in (row.split("\t") for row in rows))


@dataclass
class ClassImages:
    """One class's per-class image lists (``<split>_<k>.txt``)."""

    positives: list[str]
    negatives: list[str]


def find_root(path: Path) -> Path | None:
    """The devkit root at ``path`` (or its Kaggle ``ILSVRC/`` child), if it is one."""
    for candidate in (path, path / "ILSVRC"):
        if (candidate / "ImageSets" / "DET").is_dir() or (candidate / "Annotations" / "DET").is_dir():
            return candidate
    return None


def locate(path: Path, split: str | None) -> tuple[Path, str, Path | None] | None:
    """``(root, split folder, subset)`` if ``path`` is, or lies in, an ILSVRC-DET layout.

    ``subset`` is an image-set file or an annotation sub-folder to read instead of the whole
    split (None: the split's ``<split>.txt``). None when ``path`` is not ILSVRC at all.
    """
    path = path.resolve()
    if path.is_dir() and (root := find_root(path)) is not None:
        return root, split or "val", None
    parts = path.parts
    if path.is_file() and path.suffix == ".txt" and parts[-3:-1] == ("ImageSets", "DET"):
        root = path.parents[2]
        return root, split or _split_of_set_file(root, path.stem), path
    for i in range(len(parts) - 2):
        if parts[i:i + 2] == ("Annotations", "DET") and path.is_dir():
            root = Path(*parts[:i])
            if i + 2 == len(parts):
                return root, split or "val", None
            if i + 3 == len(parts):
                return root, parts[i + 2], None
            return root, parts[i + 2], path
    return None


def _split_of_set_file(root: Path, stem: str) -> str:
    """The split folder an image-set file refers to: ``val`` for val.txt, val1.txt or
    val_17.txt, ``train`` for train_3.txt (the longest split folder the name starts with)."""
    folders = {p.name for base in (root / "Annotations" / "DET", root / "Data" / "DET") if base.is_dir()
               for p in base.iterdir() if p.is_dir()} | {"train", "val", "test"}
    matches = [f for f in folders if stem.startswith(f)]
    return max(matches, key=len) if matches else stem


def read_image_set(path: Path, report: SkipReport, labels: bool = False) -> list[tuple[str, int | None]]:
    """``(entry, number)`` per line of an image-set file. The number column is optional, except
    in a per-class list (``labels=True``), where it must be 1 (positive) or -1 (negative)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read image-set file ({exc})") from None
    entries = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if labels and (len(fields) != 2 or fields[1] not in ("1", "-1")):
            report.skip("line", f"{path}:{lineno}", f"expected '<image> 1' or '<image> -1', got {line.strip()!r}")
        elif len(fields) > 2 or (len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1])):
            report.skip("line", f"{path}:{lineno}", f"expected '<image> [<number>]', got {line.strip()!r}")
        else:
            entries.append((fields[0], int(fields[1]) if len(fields) == 2 else None))
    return entries


def read_class_image_lists(root: Path, split: str, report: SkipReport) -> dict[str, ClassImages]:
    """Per-class positive/negative image lists ``ImageSets/DET/<split>_<k>.txt`` by synset id."""
    lists: dict[str, ClassImages] = {}
    synsets = det_synsets()
    for path in sorted((root / "ImageSets" / "DET").glob(f"{split}_*.txt")):
        match = _PER_CLASS_LIST.match(path.stem)
        if not match or match["split"] != split:
            continue
        k = int(match["index"])
        if not 1 <= k <= len(synsets):
            report.skip("annotation file", path, f"class index {k} is not one of the {len(synsets)} DET classes")
            continue
        entries = read_image_set(path, report, labels=True)
        lists[synsets[k - 1].wnid] = ClassImages([e for e, label in entries if label == 1],
                                                 [e for e, label in entries if label == -1])
    return lists


def read_ilsvrc_xml(path: Path, filename: str, report: SkipReport) -> Annotation | None:
    """One ILSVRC XML; None (reported) when the file is unusable, bad objects skipped one by one.

    Only ``name`` and ``bndbox`` are read: ILSVRC-DET has no difficult flag, and eval_det.m
    reads nothing else either."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        report.skip("annotation file", path, f"malformed XML ({exc})")
        return None
    except OSError as exc:
        report.skip("annotation file", path, f"cannot read ({exc.strerror or exc})")
        return None
    try:
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        report.skip("annotation file", path, "missing or non-integer <size><width>/<height>")
        return None
    if width <= 0 or height <= 0:
        report.skip("annotation file", path, f"image size {width}x{height} is not positive")
        return None
    known = {s.wnid for s in det_synsets()}
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            report.skip("object", path, f"object {i}: empty <name>")
            continue
        if name not in known:
            report.skip("object", path, f"object {i}: unknown synset {name!r} (not one of the 200 DET classes)")
            continue
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            report.skip("object", path, f"object {i} ({name}): missing or non-numeric <bndbox>")
            continue
        if xmax < xmin or ymax < ymin:
            report.skip("object", path, f"object {i} ({name}): xmax < xmin or ymax < ymin "
                                        f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})")
            continue
        boxes.append([xmin, ymin, xmax + 1, ymax + 1])  # inclusive 0-based -> continuous
        labels.append(name)
    ann = Annotation(filename, width, height, np.array(boxes, np.float32).reshape(-1, 4), labels)
    return check_annotation(ann, None, report, path)


def find_blacklist(root: Path) -> Path | None:
    """The devkit's ``*det_validation_blacklist.txt`` next to or inside the root, if present."""
    for base in (root, root.parent):
        for devkit in ("devkit", "ILSVRC2014_devkit", "ILSVRC2013_devkit", "ILSVRC2015_devkit", "ILSVRC2015/devkit"):
            found = sorted((base / devkit / "data").glob("*det_validation_blacklist.txt"))
            if found:
                return found[-1]
    return None


def read_blacklist(path: Path, filename_of_number: dict[int, str], report: SkipReport) -> dict[str, frozenset[str]]:
    """Image/class pairs the devkit leaves out of the evaluation: ``<image number> <synset>``."""
    known = {s.wnid for s in det_synsets()}
    pairs: dict[str, set[str]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 2 or not fields[0].isdigit():
            report.skip("line", where, f"expected '<image number> <synset>', got {line.strip()!r}")
        elif fields[1] not in known:
            report.skip("line", where, f"unknown synset {fields[1]!r}")
        elif int(fields[0]) not in filename_of_number:
            report.skip("line", where, f"image number {fields[0]} is not in the image set")
        else:
            pairs.setdefault(filename_of_number[int(fields[0])], set()).add(fields[1])
    return {name: frozenset(wnids) for name, wnids in pairs.items()}


def read_ilsvrc_dataset(root: Path, split: str = "val", subset: Path | None = None,
                        blacklist: Path | None = None) -> Dataset:
    """Ground truth of one split (or of ``subset``: an image-set file or annotation sub-folder).

    Images listed without an XML file are images without objects (as the negative training
    images are); their size comes from the image header. The validation blacklist is applied
    when the image set carries image numbers (``val.txt`` does).
    """
    report = SkipReport()
    ann_dir, image_dir = root / "Annotations" / "DET" / split, root / "Data" / "DET" / split
    entries = _entries(root, split, subset, ann_dir, report)
    annotations, seen = [], set()
    filename_of_number: dict[int, str] = {}
    for entry, number in entries:
        filename = entry + IMAGE_SUFFIX
        if filename in seen:
            report.skip("image", f"{root / 'ImageSets' / 'DET'}", f"image {entry!r} is listed twice")
            continue
        xml = ann_dir / f"{entry}.xml"
        ann = read_ilsvrc_xml(xml, filename, report) if xml.is_file() else _image_without_objects(
            image_dir / filename, report)
        if ann is None:
            continue
        ann.filename = filename
        seen.add(filename)
        annotations.append(ann)
        if number is not None:
            filename_of_number[number] = filename
    if not annotations:
        raise InputError(ann_dir, f"no usable annotations for split {split!r} ({report.summary()})")
    ignored: dict[str, frozenset[str]] = {}
    blacklist = blacklist or (find_blacklist(root) if split == "val" else None)
    if blacklist is not None and filename_of_number:
        ignored = read_blacklist(blacklist, filename_of_number, report)
    synsets = det_synsets()
    classes = [s.wnid for s in synsets]
    return Dataset("ilsvrc", classes, annotations, report, image_dir, {s.wnid: s.name for s in synsets},
                   {s.index: s.wnid for s in synsets}, ignored, f"ILSVRC-DET {len(synsets)} synsets ({CLASSES_FILE.name})")


def _entries(root: Path, split: str, subset: Path | None, ann_dir: Path, report: SkipReport) -> list[tuple[str, int | None]]:
    """The images to read: an image-set file, else the per-class lists, else every XML."""
    if subset is not None and subset.is_file():
        if _PER_CLASS_LIST.match(subset.stem):  # its second column is a label, not an image number
            return [(e, None) for e, _ in read_image_set(subset, report, labels=True)]
        return read_image_set(subset, report)
    if subset is not None:  # an annotation sub-folder
        return [(str(p.relative_to(ann_dir).with_suffix("")), None) for p in sorted(subset.rglob("*.xml"))]
    set_file = root / "ImageSets" / "DET" / f"{split}.txt"
    if set_file.is_file():
        return read_image_set(set_file, report)
    per_class = read_class_image_lists(root, split, report)
    if per_class:
        names = sorted({e for lists in per_class.values() for e in lists.positives + lists.negatives})
        return [(e, None) for e in names]
    if not ann_dir.is_dir():
        raise InputError(root, f"no ImageSets/DET/{split}.txt and no Annotations/DET/{split} folder")
    return [(str(p.relative_to(ann_dir).with_suffix("")), None) for p in sorted(ann_dir.rglob("*.xml"))]


def _image_without_objects(image: Path, report: SkipReport) -> Annotation | None:
    if not image.is_file():
        report.skip("image", image, "listed in the image set but has neither an annotation file nor an image")
        return None
    try:
        with Image.open(image) as im:  # reads the header only
            width, height = im.size
    except (OSError, UnidentifiedImageError) as exc:
        report.skip("image", image, f"no annotation file and the image is unreadable ({exc})")
        return None
    return Annotation(image.name, width, height)
