"""ILSVRC-DET ground truth: one split of either release layout (``ilsvrc_layout``) as a Dataset.

Coordinates: ILSVRC boxes are 0-based *inclusive* pixel indices (a box covering the first pixel
column has ``xmin = 0``; the devkit's ``eval_detection.m`` computes a width as ``xmax - xmin +
1``). They become incdet's continuous coordinates with an exclusive far edge, ``[xmin, ymin,
xmax + 1, ymax + 1]``, so ``x2 - x1`` is the devkit's width and overlaps and the small-object
threshold come out exactly as in the devkit.

For training (``purpose="train"``) every validation image that the blacklist names for any
class is left out, as R-CNN did (its ``imdb.is_blacklisted`` is skipped by ``rcnn_train.m``, the
bounding-box regressor and its val1/val2 split), and reported; for evaluation only the listed
image/class pairs are ignored, as ``eval_detection.m`` does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from incdet.data.checks import check_annotation
from incdet.data.ilsvrc_classes import CLASSES_FILE, check_meta_det, det_synsets
from incdet.data.ilsvrc_layout import Layout, split_of
from incdet.data.ilsvrc_lists import (
    PARTIAL,
    ListEntry,
    iter_labelled_list,
    read_blacklist,
    read_image_set,
)
from incdet.data.records import Annotation, Dataset
from incdet.errors import InputError
from incdet.structures import SkipReport

IMAGE_SUFFIX = ".JPEG"
PURPOSES = ("eval", "train")


@dataclass
class IlsvrcDataset(Dataset):
    """A Dataset with what only ILSVRC has."""

    # image file name -> its index in the image set (val.txt's second column): the devkit
    # submission format's <image_index>; empty when the image set has no index column
    image_numbers: dict[str, int] = field(default_factory=dict)
    # image file name -> classes the image is a partial positive for (label 0): not every
    # instance of them is boxed, so unboxed regions there are not reliable background
    partial: dict[str, frozenset[str]] = field(default_factory=dict)
    release: str = ""  # "2015" or "2014" (layout it was read from)


def submission_numbers(dataset: Dataset, path: str | Path) -> dict[str, int]:
    """The image numbers a devkit submission file's ``<image_index>`` refers to; InputError naming
    ``path`` (the ground truth) when ``dataset`` is not an ILSVRC-DET image set that numbers its images."""
    numbers = dataset.image_numbers if isinstance(dataset, IlsvrcDataset) else None
    if not numbers:
        raise InputError(path, "not an ILSVRC-DET image set with image numbers (like val.txt's second column): "
                               "a submission file needs ILSVRC-DET ground truth whose image set numbers its images")
    return numbers


def read_ilsvrc_xml(path: Path, filename: str, report: SkipReport) -> Annotation | None:
    """One ILSVRC XML; None (reported) when the file is unusable, bad objects skipped one by one.

    Only ``name`` and ``bndbox`` are read: ILSVRC-DET has no difficult flag, and the devkit
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


def read_ilsvrc_dataset(layout: Layout, split: str = "val", subset: Path | None = None,
                        blacklist: Path | None = None, purpose: str = "eval") -> IlsvrcDataset:
    """Ground truth of one split (or of ``subset``: an image-set file or annotation sub-folder).

    Images listed without an XML file are images without objects (as the negative training
    images are); their size comes from the image header. ``purpose="train"`` also skips listed
    images whose image file is missing, and every image the validation blacklist names.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    meta = layout.devkit_data / "meta_det.mat" if layout.devkit_data else None
    if meta is not None and meta.is_file():
        check_meta_det(meta)
    report = SkipReport()
    image_dir, ann_dir = layout.folders(split)
    entries, partial_names = _entries(layout, split, subset, ann_dir, report)
    annotations, numbers, partial, seen = [], {}, {}, {}
    for e in entries:
        filename = layout.entry(e.name, split) + IMAGE_SUFFIX
        if filename in seen:
            report.skip("image", e.where, f"image {e.name!r} is listed twice (first at {seen[filename]})")
            continue
        image = image_dir / filename
        if purpose == "train" and not image.is_file():
            report.skip("image", e.where, f"image {image} not found")
            continue
        xml = ann_dir / f"{filename[:-len(IMAGE_SUFFIX)]}.xml" if ann_dir is not None else None
        ann = read_ilsvrc_xml(xml, filename, report) if xml is not None and xml.is_file() \
            else _image_without_objects(image, e.where, report)
        if ann is None:
            continue
        ann.filename = filename
        seen[filename] = e.where
        annotations.append(ann)
        if e.number is not None:
            numbers[filename] = e.number
        if e.name in partial_names:
            partial[filename] = frozenset(partial_names[e.name])
    if not annotations:
        raise InputError(subset or ann_dir or image_dir, f"no usable images for split {split!r} ({report.summary()})")
    blacklist = blacklist or (layout.devkit_file("*det_validation_blacklist.txt") if split_of(split) == "val" else None)
    ignored = _blacklisted(layout, blacklist, subset, entries, set(seen), report) if blacklist else {}
    if purpose == "train" and ignored:
        for ann in annotations:
            if ann.filename in ignored:
                report.skip("image", ann.filename, f"in the validation blacklist {blacklist} for "
                                                   f"{', '.join(sorted(ignored[ann.filename]))}; left out of "
                                                   "training as R-CNN did")
        annotations = [a for a in annotations if a.filename not in ignored]
        numbers = {f: n for f, n in numbers.items() if f not in ignored}
        ignored = {}
    synsets = det_synsets()
    checked = f", checked against {meta}" if meta is not None and meta.is_file() else ""
    return IlsvrcDataset("ilsvrc", [s.wnid for s in synsets], annotations, report, image_dir,
                         {s.wnid: s.name for s in synsets}, {s.index: s.wnid for s in synsets}, ignored,
                         f"ILSVRC-DET {len(synsets)} synsets ({CLASSES_FILE.name}{checked})",
                         image_numbers=numbers, partial=partial, release=layout.release)


def _entries(layout: Layout, split: str, subset: Path | None, ann_dir: Path | None,
             report: SkipReport) -> tuple[list[ListEntry], dict[str, set[str]]]:
    """The images to read and, per entry, the classes it is a partial positive for: an image-set
    file, else the union of the per-class lists, else every XML of the split."""
    synsets = det_synsets()
    if subset is not None and subset.is_file():
        per_class = layout.is_class_list(subset)
        if per_class is None:
            return read_image_set(subset, report), {}
        files = [(subset, *per_class)]
    elif subset is not None:  # an annotation sub-folder
        return _all_xml(subset, ann_dir), {}
    else:
        files = layout.class_list_files(split)
    set_file = layout.set_file(split)
    listed = read_image_set(set_file, report) if subset is None and set_file.is_file() else None
    union: dict[str, ListEntry] = {}
    partial: dict[str, set[str]] = {}
    for path, k, label in files:
        if not 1 <= k <= len(synsets):
            report.skip("annotation file", path, f"class index {k} is not one of the {len(synsets)} DET classes")
            continue
        for name, value, lineno in iter_labelled_list(path, label, report):
            if listed is None and name not in union:
                union[name] = ListEntry(name, None, f"{path}:{lineno}")
            if value == PARTIAL:
                partial.setdefault(name, set()).add(synsets[k - 1].wnid)
    if listed is not None:
        return listed, partial
    if union:
        return [union[name] for name in sorted(union)], partial
    if ann_dir is None or not ann_dir.is_dir():
        raise InputError(layout.root, f"no {set_file.name} in {layout.lists}, no per-class lists and no "
                                      f"annotation folder for split {split!r}")
    return _all_xml(ann_dir, ann_dir), {}


def _all_xml(folder: Path, ann_dir: Path | None) -> list[ListEntry]:
    base = ann_dir if ann_dir is not None else folder
    return [ListEntry(str(p.relative_to(base).with_suffix("")), None, str(p)) for p in sorted(folder.rglob("*.xml"))]


def _blacklisted(layout: Layout, path: Path, subset: Path | None, entries: list[ListEntry], loaded: set[str],
                 report: SkipReport) -> dict[str, frozenset[str]]:
    """Image/class pairs of the loaded images that the blacklist names. Its image numbers are
    val.txt's, also when a subset (e.g. R-CNN's renumbered val1.txt) was read."""
    val_txt = layout.set_file("val")
    if val_txt.is_file():
        names = {e.number: e.name for e in read_image_set(val_txt, SkipReport()) if e.number is not None}
    elif (subset is None or subset.stem == "val") and entries and all(e.number is not None for e in entries):
        names = {e.number: e.name for e in entries}
        report.warn(path, f"no {val_txt}: its image numbers are taken to be those of the image set read")
    else:
        report.warn(path, f"not applied: no {val_txt} to say which images its numbers are")
        return {}
    pairs: dict[str, set[str]] = {}
    for number, wnid, where in read_blacklist(path, report):
        if number not in names:
            report.skip("line", where, f"image number {number} is not in {val_txt.name}")
            continue
        filename = layout.entry(names[number], "val") + IMAGE_SUFFIX
        if filename in loaded:
            pairs.setdefault(filename, set()).add(wnid)
    return {name: frozenset(wnids) for name, wnids in pairs.items()}


def _image_without_objects(image: Path, where: str, report: SkipReport) -> Annotation | None:
    if not image.is_file():
        report.skip("image", where, f"{image.name} is listed but has neither an annotation file nor an image")
        return None
    try:
        with Image.open(image) as im:  # reads the header only
            width, height = im.size
    except (OSError, UnidentifiedImageError) as exc:
        report.skip("image", where, f"{image.name}: no annotation file and the image is unreadable ({exc})")
        return None
    return Annotation(image.name, width, height)
