"""PASCAL-VOC XML annotations (ILSVRC-DET uses the same shape)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from incdet.data.checks import check_annotation
from incdet.data.classes import read_class_list
from incdet.data.records import Annotation, Dataset
from incdet.errors import InputError
from incdet.io import write_text
from incdet.structures import SkipReport


def read_voc_xml(path: str | Path, report: SkipReport | None = None) -> Annotation:
    """Parse one VOC XML file; VOC's 1-based inclusive corners become continuous xyxy.

    An unusable object (no name, a missing or non-numeric box, xmax < xmin) is dropped and recorded
    in ``report``, keeping the file's other objects, as every reader of incdet does; without a
    ``report`` it is an InputError instead. A file that cannot be parsed at all is an InputError.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(path, f"malformed XML ({exc})") from None
    try:
        filename = root.findtext("filename", "").strip() or path.stem
        width = int(root.findtext("size/width"))
        height = int(root.findtext("size/height"))
    except (TypeError, ValueError):
        raise InputError(path, "missing or non-integer <size><width>/<height>") from None
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        problem = None
        try:
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            problem = f"object {i} ({name or 'unnamed'}): missing or non-numeric bndbox"
        else:
            if not name:
                problem = f"object {i}: empty <name>"
            elif x2 < x1 or y2 < y1:
                problem = f"object {i} ({name}): xmax < xmin or ymax < ymin ({x1:g}, {y1:g}, {x2:g}, {y2:g})"
        if problem is not None:
            if report is None:
                raise InputError(path, problem)
            report.skip("object", path, problem)
            continue
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        labels.append(name)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return Annotation(filename, width, height, np.array(boxes, np.float32).reshape(-1, 4), labels, np.array(difficult, bool))


def write_voc_xml(path: str | Path, ann: Annotation) -> None:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = ann.filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", ann.width), ("height", ann.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for box, label, diff in zip(ann.boxes, ann.labels, ann.difficult):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "difficult").text = str(int(diff))
        bnd = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, key).text = str(value)
    ET.indent(root)
    write_text(path, ET.tostring(root, encoding="unicode") + "\n")


def read_voc_dir(folder: str | Path) -> list[Annotation]:
    """All ``*.xml`` annotations in a folder, sorted by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "annotation folder does not exist")
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise InputError(folder, "no .xml annotation files in this folder")
    return [read_voc_xml(f) for f in files]


def find_classes_txt(folder: Path) -> Path | None:
    """``classes.txt`` in the annotation folder, its parent, or its parent's parent (the demo
    layout keeps it in ``DIR/classes.txt`` next to ``DIR/test/annotations``)."""
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / "classes.txt").is_file():
            return candidate / "classes.txt"
    return None


def read_voc_dataset(path: Path, split: str | None = None) -> Dataset:
    """A VOC annotation folder of ``*.xml`` files, or a VOC year folder with ``ImageSets/Main/<split>.txt``."""
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
    classes_txt = find_classes_txt(ann_dir)
    classes = read_class_list(classes_txt) if classes_txt else None
    annotations, seen = [], set()
    for xml in files:
        try:
            ann = read_voc_xml(xml, report)
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
