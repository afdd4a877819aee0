"""Where an ILSVRC-DET release keeps its images, XML annotations and image lists.

Two layouts are in use, with the same XML files and image names:

2015 (the ILSVRC2015 tarball and copies of it such as Kaggle's, which nests it in ``ILSVRC/``)::

    Data/DET/{train,val,test}/<entry>.JPEG        Annotations/DET/{train,val}/<entry>.xml
    ImageSets/DET/val.txt, test.txt               "<entry> <index>"
    ImageSets/DET/train_<k>.txt                   "<entry> <label>", label 1 / 0 / -1
    devkit/data/meta_det.mat, devkit/data/ILSVRC2015_det_validation_blacklist.txt

2013/2014 (the original release: each archive unpacked beside the devkit)::

    ILSVRC2013_DET_val/<entry>.JPEG               ILSVRC2013_DET_bbox_val/<entry>.xml
    ILSVRC2014_DET_train/<entry>.JPEG             ILSVRC2014_DET_bbox_train/<entry>.xml
    ILSVRC2014_devkit/data/det_lists/val.txt      "<entry> <index>"
    ILSVRC2014_devkit/data/det_lists/train_pos_<k>.txt, train_neg_<k>.txt   "<entry>" (label from the name)
    ILSVRC2014_devkit/data/meta_det.mat, ILSVRC2014_devkit/data/ILSVRC2014_det_validation_blacklist.txt

``<entry>`` is an image path without extension relative to the split's folder. 2015 train entries
carry their sub-folders (``ILSVRC2013_train/n01443537/n01443537_10007``), 2014 ones one folder
(``n01443537/n01443537_10007``). The 2013 devkit (``ILSVRC2013_devkit``, ``ILSVRC2013_DET_train``,
``ILSVRC2013_DET_bbox_train``) lists bare names (``n01443537_10007``) whose folder is the WordNet id
before the ``_`` (R-CNN's ``imdb_from_ilsvrc13.m``); a bare name without one (the negative-only
``ILSVRC2013_train_<z>`` images) is looked up in the other sub-folders of the train folder.
See docs/evaluation.md for the sources of all this and what is not confirmed by any.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SPLITS = ("train", "val", "test")
DEVKIT_NAMES = ("ILSVRC2014_devkit", "ILSVRC2013_devkit", "ILSVRC2015_devkit/devkit", "ILSVRC2015/devkit", "devkit")
_WNID_NAME = re.compile(r"^(?P<wnid>n\d{8})_\d+$")
_FOLDERS_2014 = {  # split -> (image folders, annotation folders), first existing wins
    "val": (("ILSVRC2013_DET_val",), ("ILSVRC2013_DET_bbox_val",)),
    "train": (("ILSVRC2014_DET_train", "ILSVRC2013_DET_train"), ("ILSVRC2014_DET_bbox_train", "ILSVRC2013_DET_bbox_train")),
    "test": (("ILSVRC2014_DET_test", "ILSVRC2013_DET_test"), ()),
}
_PER_CLASS_2015 = re.compile(r"^(?P<split>.+)_(?P<index>\d+)$")
_PER_CLASS_2014 = re.compile(r"^(?P<split>train)_(?P<kind>pos|neg|part)_(?P<index>\d+)$")
_LABEL_OF_KIND = {"pos": 1, "part": 0, "neg": -1}


def split_of(stem: str) -> str:
    """The split an image-set file refers to: ``val`` for val.txt, val1.txt or val_17.txt,
    ``train`` for train_3.txt or train_pos_3.txt (the split name the stem starts with)."""
    return next((s for s in SPLITS if stem.startswith(s)), stem)


@dataclass(frozen=True)
class Layout:
    """One release's folders. ``root`` holds the data folders; ``lists`` the image-set files;
    ``devkit_data`` the devkit's ``data`` folder (meta_det.mat, blacklist), when there is one."""

    release: str  # "2015" or "2014" (which also covers the 2013 devkit)
    root: Path
    lists: Path
    devkit_data: Path | None

    def folders(self, split: str) -> tuple[Path, Path | None]:
        """(image folder, annotation folder or None) of a split."""
        if self.release == "2015":
            folder = split if any((self.root / d / "DET" / split).is_dir() for d in ("Data", "Annotations")) \
                else split_of(split)  # val1.txt (R-CNN's half of val) lists val images
            return self.root / "Data" / "DET" / folder, self.root / "Annotations" / "DET" / folder
        images, annotations = _FOLDERS_2014.get(split_of(split), ((), ()))
        return self._first(images) or self.root / split, self._first(annotations)

    def _first(self, names: tuple[str, ...]) -> Path | None:
        paths = [self.root / name for name in names]
        return next((p for p in paths if p.is_dir()), paths[0] if paths else None)

    def set_file(self, split: str) -> Path:
        return self.lists / f"{split}.txt"

    def class_list_files(self, split: str) -> list[tuple[Path, int, int | None]]:
        """Per-class lists of a split as ``(file, class index, label)``; label None: each line
        has its own (2015 ``train_<k>.txt``), else the file name fixes it (2014 pos/neg/part)."""
        found = []
        for path in sorted(self.lists.glob(f"{split}_*.txt")) if self.lists.is_dir() else []:
            if self.release == "2015" and (m := _PER_CLASS_2015.match(path.stem)) and m["split"] == split:
                found.append((path, int(m["index"]), None))
            elif self.release == "2014" and (m := _PER_CLASS_2014.match(path.stem)) and m["split"] == split:
                found.append((path, int(m["index"]), _LABEL_OF_KIND[m["kind"]]))
        return found

    def is_class_list(self, path: Path) -> tuple[int, int | None] | None:
        """``(class index, label)`` if ``path`` is a per-class list, else None."""
        return next(((k, label) for p, k, label in self.class_list_files(split_of(path.stem)) if p == path), None)

    def entry(self, name: str, split: str) -> str:
        """A list entry as a path relative to the split's folders (2013 bare names get theirs)."""
        if self.release != "2014" or "/" in name or split_of(split) != "train":
            return name
        if m := _WNID_NAME.match(name):
            return f"{m['wnid']}/{name}"
        return _bare_name_index(self.folders("train")[0]).get(name, name)

    def devkit_file(self, pattern: str) -> Path | None:
        """The newest devkit data file matching ``pattern`` (e.g. ``*det_validation_blacklist.txt``)."""
        found = sorted(self.devkit_data.glob(pattern)) if self.devkit_data else []
        return found[-1] if found else None


@lru_cache(maxsize=4)
def _bare_name_index(images: Path) -> dict[str, str]:
    """Image name -> ``folder/name`` in the train sub-folders that are not WordNet ids (the
    ``ILSVRC2013_DET_train_extra<n>`` negatives); read once, when a bare name needs it."""
    index: dict[str, str] = {}
    for folder in sorted(os.scandir(images), key=lambda e: e.name) if images.is_dir() else []:
        if folder.is_dir() and not re.fullmatch(r"n\d{8}", folder.name):
            for f in os.scandir(folder.path):
                stem = os.path.splitext(f.name)[0]
                index.setdefault(stem, f"{folder.name}/{stem}")
    return index


def _devkit_data(base: Path) -> Path | None:
    for name in DEVKIT_NAMES:
        if (base / name / "data").is_dir():
            return base / name / "data"
    return None


def layout_at(path: Path) -> Layout | None:
    """The layout whose root (or devkit folder) ``path`` is, if any."""
    for candidate in (path, path / "ILSVRC"):  # the Kaggle copy nests the 2015 layout in ILSVRC/
        if (candidate / "ImageSets" / "DET").is_dir() or (candidate / "Annotations" / "DET").is_dir():
            data = _devkit_data(candidate) or _devkit_data(candidate.parent)
            return Layout("2015", candidate, candidate / "ImageSets" / "DET", data)
    if (path / "data" / "det_lists").is_dir():  # the devkit folder itself
        return Layout("2014", path.parent, path / "data" / "det_lists", path / "data")
    data = _devkit_data(path)
    if data is not None and (data / "det_lists").is_dir():
        return Layout("2014", path, data / "det_lists", data)
    if any((path / name).is_dir() for name in ("ILSVRC2013_DET_bbox_val", "ILSVRC2013_DET_val",
                                               "ILSVRC2014_DET_bbox_train", "ILSVRC2013_DET_bbox_train")):
        return Layout("2014", path, path / "det_lists", None)  # data folders without a devkit
    return None


def locate(path: Path, split: str | None) -> tuple[Layout, str, Path | None] | None:
    """``(layout, split, subset)`` if ``path`` is, or lies in, an ILSVRC-DET layout; None if not.

    ``subset`` is an image-set file or an annotation sub-folder to read instead of the whole
    split (None: the split's ``<split>.txt``).
    """
    path = path.resolve()
    if path.is_dir() and (layout := layout_at(path)) is not None:
        return layout, split or "val", None
    parts = path.parts
    if path.is_file() and path.suffix == ".txt" and parts[-3:-1] in (("ImageSets", "DET"), ("data", "det_lists")):
        layout = layout_at(path.parents[2])
        if layout is not None:
            return layout, split or split_of(path.stem), path
    if not path.is_dir():
        return None
    for i in range(len(parts)):
        if parts[i:i + 2] == ("Annotations", "DET") and (layout := layout_at(Path(*parts[:i]))) is not None:
            if i + 2 == len(parts):
                return layout, split or "val", None
            return layout, parts[i + 2], path if i + 3 < len(parts) else None
        bbox = re.fullmatch(r"ILSVRC201[34]_DET_bbox_(?P<split>train|val)", parts[i])
        if bbox and (layout := layout_at(Path(*parts[:i]))) is not None:
            return layout, bbox["split"], path if i + 1 < len(parts) else None
    return None
