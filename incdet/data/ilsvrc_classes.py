"""The 200 ILSVRC-DET classes, and the check of that list against a devkit's ``meta_det.mat``.

Detections refer to a class by its ``ILSVRC2014_DET_ID`` (1..200, the submission format's second
column and incdet's ``category_id``), ground truth by its WordNet id. Both come from the shipped
``ilsvrc_det_classes.tsv``; a wrong order there would silently give every submission the wrong
class, so when the user's devkit has ``data/meta_det.mat`` its order is compared, entry by entry,
and a mismatch is refused.

``meta_det.mat`` holds a struct array ``synsets`` with the fields ``ILSVRC2014_DET_ID`` (2013:
``ILSVRC2013_DET_ID``, 2015: ``ILSVRC2015_DET_ID``), ``WNID``, ``name`` and ``description``, sorted
so that ``synsets(i).ILSVRC2014_DET_ID == i`` (ILSVRC2015 devkit readme, section 2.1.1). Only the
first 200 entries are classes (R-CNN's ``imdb_from_ilsvrc13.m`` reads ``synsets(1:200)``); any
entries after them are not compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from incdet.errors import InputError

CLASSES_FILE = Path(__file__).with_name("ilsvrc_det_classes.tsv")
NUM_CLASSES = 200
_DET_ID_FIELD = re.compile(r"^ILSVRC\d{4}_DET_ID$")


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


def _scalar(value: Any) -> Any:
    """A MATLAB scalar or string from loadmat (``squeeze_me``): unwrap 0-d and 1-element arrays."""
    while hasattr(value, "shape") and getattr(value, "size", 0) == 1 and not isinstance(value, str):
        value = value.item() if value.shape == () else value.reshape(-1)[0]
    return value


def read_meta_det(path: Path) -> list[tuple[int, str, str]]:
    """``(DET_ID, WNID, name)`` of every entry of ``synsets`` in ``meta_det.mat``, in file order."""
    from scipy.io import loadmat  # scipy is heavy; only needed when a devkit is present

    try:
        mat = loadmat(str(path), squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... for non-.mat files
        raise InputError(path, f"cannot read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    synsets = mat.get("synsets")
    names = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    id_field = next((n for n in names if _DET_ID_FIELD.match(n)), None)
    if id_field is None or "WNID" not in names or "name" not in names:
        raise InputError(path, "expected a struct array 'synsets' with fields ILSVRC20xx_DET_ID, WNID and name "
                               f"(found {sorted(mat) if synsets is None else list(names)})")
    rows = []
    for entry in synsets.reshape(-1):
        try:
            rows.append((int(_scalar(entry[id_field])), str(_scalar(entry["WNID"])).strip(),
                         " ".join(str(_scalar(entry["name"])).split())))
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"synsets({len(rows) + 1}): unreadable {id_field}/WNID/name ({exc})") from None
    return rows


def check_meta_det(path: Path) -> None:
    """Refuse (InputError) a ``meta_det.mat`` whose first 200 synsets are not, in order, the
    shipped classes; the message names both files and the first entry that differs."""
    rows = read_meta_det(path)
    shipped = det_synsets()
    if len(rows) < len(shipped):
        raise InputError(path, f"has {len(rows)} synsets, incdet's class list {CLASSES_FILE} has {len(shipped)}")
    for i, (s, row) in enumerate(zip(shipped, rows), 1):
        if row != (s.index, s.wnid, s.name):
            raise InputError(path, f"class order differs from incdet's class list {CLASSES_FILE}: synsets({i}) is "
                                   f"{_show(row)} here but {_show((s.index, s.wnid, s.name))} in {CLASSES_FILE.name}")


def _show(row: tuple[int, str, str]) -> str:
    return f"(DET_ID {row[0]}, {row[1]}, {row[2]!r})"
