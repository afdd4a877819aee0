"""Image-classification data: ImageFolder trees, the ILSVRC-CLS layout, and a small real set that ships.

Formats (``load_classification(format, root, split)``):

``folder``
    torchvision's ImageFolder layout: ``root/<split>/<class>/<image>``; classes are the
    sorted folder names (or the list given, e.g. the training split's, for validation).
``ilsvrc``
    ILSVRC-2012 CLS (the GoogLeNet / Inception-v3 training data)::

        train/<wnid>/*.JPEG                     (or ILSVRC2012_img_train/, ILSVRC/Data/CLS-LOC/train/)
        val/ILSVRC2012_val_00000001.JPEG ...    (or ILSVRC2012_img_val/, ILSVRC/Data/CLS-LOC/val/;
                                                 a val/ already sorted into <wnid>/ folders works too)
        ILSVRC2012_devkit_t12/data/meta.mat + ILSVRC2012_validation_ground_truth.txt
          or LOC_synset_mapping.txt + LOC_val_solution.csv (the Kaggle copy)

    Classes are the 1000 synsets in ILSVRC2012_ID order (1 = n01440764), which is also the
    sorted-WNID order torchvision's ImageNet weights use.
``digits``
    scikit-learn's bundled handwritten digits (1797 real 8x8 scans of 10 classes, read from a
    file inside the scikit-learn wheel, so nothing is downloaded): the small real dataset for
    tests and the demo. ``split`` is ``train`` (80%) or ``val`` (20%), stratified and fixed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from incdet.errors import InputError
from incdet.io import read_image
from incdet.structures import SkipReport

FORMATS = ("folder", "ilsvrc", "digits")
DIGITS_VAL_FRACTION = 0.2
_TRAIN_DIRS = ("train", "ILSVRC2012_img_train", "ILSVRC/Data/CLS-LOC/train", "Data/CLS-LOC/train")
_VAL_DIRS = ("val", "ILSVRC2012_img_val", "ILSVRC/Data/CLS-LOC/val", "Data/CLS-LOC/val")
_DEVKIT_DIRS = ("ILSVRC2012_devkit_t12/data", "devkit/data", ".")


@dataclass
class ClassificationSet:
    """Images with one label each: file paths read on demand, or pixels held in memory."""

    classes: list[str]
    labels: np.ndarray  # (N,) int64 indices into ``classes``
    source: str
    paths: list[Path] | None = None
    pixels: np.ndarray | None = None  # (N, H, W, 3) uint8
    skipped: SkipReport = field(default_factory=SkipReport)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        """HxWx3 RGB uint8; InputError for an unreadable file."""
        if self.pixels is not None:
            return self.pixels[index]
        assert self.paths is not None
        return read_image(self.paths[index])

    def head(self, count: int) -> "ClassificationSet":
        """The first ``count`` images (for a quick look at a large split)."""
        return replace(self, labels=self.labels[:count], paths=None if self.paths is None else self.paths[:count],
                       pixels=None if self.pixels is None else self.pixels[:count])


def load_classification(format: str, root: str | Path | None, split: str | None, classes: Sequence[str] | None = None) -> ClassificationSet:
    """One split of a dataset; ``classes`` (e.g. the training split's) fixes the label indices."""
    if format == "digits":
        data = load_digits(split or "train")
    elif root is None:
        raise InputError(None, f"the {format} format needs a dataset root")
    elif format == "folder":
        data = read_image_folder(Path(root) / split if split else Path(root), classes)
    elif format == "ilsvrc":
        data = read_ilsvrc_cls(Path(root), split or "val", classes)
    else:
        raise InputError(root, f"unknown dataset format {format!r}; choose from {', '.join(FORMATS)}")
    if classes is not None and data.classes != list(classes):
        raise InputError(data.source, f"classes {data.classes[:3]}... differ from the given {list(classes)[:3]}...")
    if not len(data):
        raise InputError(data.source, "no images")
    return data


def read_image_folder(folder: Path, classes: Sequence[str] | None = None) -> ClassificationSet:
    """``folder/<class>/<image>``; a class folder unknown to ``classes`` is an error, a missing one is fine."""
    if not folder.is_dir():
        raise InputError(folder, "not a directory")
    try:
        found, _ = find_classes(folder)
    except FileNotFoundError:
        raise InputError(folder, "no class sub-folders (expected <class>/<image> inside)") from None
    names = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise InputError(folder / unknown[0], f"class folder not in the class list ({len(unknown)} such folders)")
    index = {name: names.index(name) for name in found}
    samples = make_dataset(folder, index, extensions=IMG_EXTENSIONS, allow_empty=True)
    return ClassificationSet(names, np.array([label for _, label in samples], dtype=np.int64), str(folder),
                             paths=[Path(p) for p, _ in samples])


def load_digits(split: str) -> ClassificationSet:
    """scikit-learn's digits as RGB uint8 (ink is bright), split 80/20 per class with a fixed seed."""
    if split not in ("train", "val"):
        raise InputError(None, f"the digits dataset has splits train and val, not {split!r}")
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise InputError(None, "the digits dataset ships with scikit-learn: pip install scikit-learn") from None
    bunch = sklearn_digits()
    gray = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # scans count 0..16 ink pixels per cell
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    val = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        val[members[: round(len(members) * DIGITS_VAL_FRACTION)]] = True
    keep = val if split == "val" else ~val
    pixels = np.repeat(gray[keep][..., None], 3, axis=-1)
    return ClassificationSet([str(k) for k in range(10)], labels[keep], f"digits:{split}", pixels=np.ascontiguousarray(pixels))


def _first_dir(root: Path, candidates: Sequence[str]) -> Path | None:
    return next((root / c for c in candidates if (root / c).is_dir()), None)


def ilsvrc_classes(root: Path) -> list[str]:
    """The synsets in ILSVRC2012_ID order, from the devkit, the Kaggle mapping file or the train folders."""
    for sub in _DEVKIT_DIRS:
        meta = root / sub / "meta.mat"
        if meta.is_file():
            return _read_meta_mat(meta)
    mapping = root / "LOC_synset_mapping.txt"
    if mapping.is_file():
        return [line.split()[0] for line in mapping.read_text().splitlines() if line.strip()]
    train = _first_dir(root, _TRAIN_DIRS)
    if train is None:
        raise InputError(root, "not an ILSVRC-CLS root: no devkit meta.mat, LOC_synset_mapping.txt or train/ folder")
    return sorted(p.name for p in train.iterdir() if p.is_dir())


def _read_meta_mat(path: Path) -> list[str]:
    from scipy.io import loadmat

    try:
        synsets = loadmat(path, squeeze_me=True)["synsets"]
        rows = [(int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets if int(s["num_children"]) == 0]
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise InputError(path, f"not an ILSVRC-2012 devkit meta.mat ({type(exc).__name__}: {exc})") from None
    return [wnid for _, wnid in sorted(rows)]


def _val_labels(root: Path, classes: list[str]) -> dict[str, str]:
    """Image stem -> WNID of every validation image, from the devkit ground truth or LOC_val_solution.csv."""
    for sub in _DEVKIT_DIRS:
        truth = root / sub / "ILSVRC2012_validation_ground_truth.txt"
        if truth.is_file():
            labels = {}
            for number, line in enumerate(truth.read_text().split(), start=1):
                if not line.isdigit() or not 1 <= int(line) <= len(classes):
                    raise InputError(truth, f"line {number}: {line!r} is not an ILSVRC2012_ID in 1..{len(classes)}")
                labels[f"ILSVRC2012_val_{number:08d}"] = classes[int(line) - 1]
            return labels
    solution = root / "LOC_val_solution.csv"
    if solution.is_file():
        with solution.open(newline="") as f:
            return {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f) if row.get("PredictionString")}
    raise InputError(root, "no validation ground truth (ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt or LOC_val_solution.csv)")


def read_ilsvrc_cls(root: Path, split: str, classes: Sequence[str] | None = None) -> ClassificationSet:
    """The ``train`` or ``val`` split of an ILSVRC-CLS root (see the module docstring)."""
    if split not in ("train", "val"):
        raise InputError(root, f"ILSVRC-CLS splits are train and val, not {split!r}")
    if not root.is_dir():
        raise InputError(root, "not a directory")
    names = list(classes) if classes is not None else ilsvrc_classes(root)
    folder = _first_dir(root, _TRAIN_DIRS if split == "train" else _VAL_DIRS)
    if folder is None:
        raise InputError(root, f"no {split} image folder ({', '.join(_TRAIN_DIRS if split == 'train' else _VAL_DIRS)})")
    if split == "train" or any(p.is_dir() for p in folder.iterdir()):
        data = read_image_folder(folder, names)
        data.source = str(root)
        return data
    truth = _val_labels(root, names)
    index = {wnid: i for i, wnid in enumerate(names)}
    report = SkipReport()
    paths, labels = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS):
        wnid = truth.get(path.stem)
        if wnid is None or wnid not in index:
            report.skip("image", path, "no ground-truth label" if wnid is None else f"label {wnid} is not in the class list")
            continue
        paths.append(path)
        labels.append(index[wnid])
    return ClassificationSet(names, np.array(labels, dtype=np.int64), str(root), paths=paths, skipped=report)
