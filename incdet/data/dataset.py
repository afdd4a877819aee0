"""One entry point for ground truth in any of the three formats incdet reads.

``load_dataset(path)`` recognises a PASCAL-VOC annotation folder (or a VOC year folder with
``ImageSets/Main``), an ILSVRC-DET release in either layout (2015 ``Data/DET``...; 2013/2014
``ILSVRC2013_DET_val``... beside the devkit), from its root, its devkit or one of its image-set
files / annotation folders, and a COCO instances JSON, and returns the same thing for all of
them: the class list, one :class:`Annotation` per image and a :class:`SkipReport` of what was
left out. Bad items are skipped and reported with their file and object, never silently dropped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from incdet.data import coco
from incdet.data.checks import check_annotation
from incdet.data.ilsvrc import PURPOSES, read_ilsvrc_dataset
from incdet.data.ilsvrc_layout import locate
from incdet.data.records import Dataset
from incdet.data.voc import read_voc_dataset
from incdet.errors import InputError


def load_dataset(path: str | Path, split: str | None = None, classes: Sequence[str] | None = None,
                 image_dir: str | Path | None = None, blacklist: str | Path | None = None,
                 purpose: str = "eval") -> Dataset:
    """Detect the format of ``path`` and read it (see the module docstring for what is recognised).

    ``split`` picks the image set of an ILSVRC release or VOC year folder (default ``val``);
    ``classes`` overrides the class list the format provides; ``image_dir`` says where the
    images of a COCO JSON are (default: the JSON's folder); ``blacklist`` is the ILSVRC
    validation blacklist (default: found in the devkit's ``data`` folder, if any).
    ``purpose="train"``: ground truth to train on. For ILSVRC this leaves out every image the
    validation blacklist names (as R-CNN did) and images whose file is missing, each reported
    in ``dataset.skipped``; other formats read the same either way.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if blacklist is not None and not Path(blacklist).is_file():
        raise InputError(blacklist, "blacklist file not found")
    located = locate(path, split)
    if path.is_file() and path.suffix.lower() == ".json":
        dataset = coco.read_coco_dataset(path, image_dir=image_dir)
    elif located is not None:
        layout, split_name, subset = located
        dataset = read_ilsvrc_dataset(layout, split_name, subset, Path(blacklist) if blacklist else None, purpose)
    elif path.is_dir():
        dataset = read_voc_dataset(path, split)
    else:
        raise InputError(path, "not a recognised ground truth: expected a VOC annotation folder, an ILSVRC-DET "
                               "release (root, devkit or image-set file), or a COCO .json")
    if classes is not None:
        dataset = _with_classes(dataset, list(classes), f"given class list ({len(classes)} classes)")
    return dataset


def _with_classes(dataset: Dataset, classes: list[str], source: str) -> Dataset:
    report = dataset.skipped
    annotations = [check_annotation(a, classes, report, a.filename) for a in dataset.annotations]
    return replace(dataset, classes=classes, annotations=annotations, skipped=report,
                   category_ids={i + 1: name for i, name in enumerate(classes)}, classes_source=source,
                   classes_inferred=False)
