"""ILSVRC-DET list files: image sets, per-class training lists, the validation blacklist.

Every entry keeps the file and line it came from, so a bad or missing item is reported as
``file:line``. Per-class training lists label each image for one class (ILSVRC2015 devkit
readme, section 2.2.1): 1 positive (every instance of the class is boxed), 0 *partial positive*
(at least one instance, but not every instance may be boxed: bunches of bananas, crowds of
people), -1 negative (no instance; queried to look like places the class is found, manually
verified).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from incdet.data.ilsvrc_classes import det_synsets
from incdet.errors import InputError
from incdet.structures import SkipReport

POSITIVE, PARTIAL, NEGATIVE = 1, 0, -1
_INTEGER = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class ListEntry:
    name: str  # the entry as listed: image path without extension, relative to the split's folder
    number: int | None  # the image's index (val.txt's second column), None when the file has none
    where: str  # "file:line"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read list file ({exc})") from None


def read_image_set(path: Path, report: SkipReport) -> list[ListEntry]:
    """``<image> [<number>]`` per line (val.txt, test.txt, R-CNN's val1.txt, ...)."""
    entries = []
    for lineno, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2 or (len(fields) == 2 and not _INTEGER.match(fields[1])):
            report.skip("line", f"{path}:{lineno}", f"expected '<image> [<number>]', got {line.strip()!r}")
        else:
            entries.append(ListEntry(fields[0], int(fields[1]) if len(fields) == 2 else None, f"{path}:{lineno}"))
    return entries


def iter_labelled_list(path: Path, label: int | None, report: SkipReport) -> Iterator[tuple[str, int, int]]:
    """``(entry, label, line number)`` per line of a per-class list. ``label`` None: each line is
    ``<image> <label>`` (2015 ``train_<k>.txt``); else the file's name fixes the label (2014
    ``train_pos_<k>.txt`` etc.), its lines are ``<image>``, and a second column must agree.
    A generator: the real lists have some 13 million lines."""
    for lineno, line in enumerate(_lines(path), 1):
        fields = line.split()
        if len(fields) == 1 and label is not None:
            yield fields[0], label, lineno
        elif len(fields) == 2 and fields[1] in ("1", "0", "-1") and label in (None, int(fields[1])):
            yield fields[0], int(fields[1]), lineno
        elif fields:
            expected = "'<image> <label>' with label 1, 0 or -1" if label is None else f"'<image>' (label {label})"
            report.skip("line", f"{path}:{lineno}", f"expected {expected}, got {line.strip()!r}")


def read_blacklist(path: Path, report: SkipReport) -> list[tuple[int, str, str]]:
    """``(image number, synset, "file:line")`` per line ``<image number> <synset>``; the numbers
    are those of the validation image set (val.txt's second column)."""
    known = {s.wnid for s in det_synsets()}
    rows = []
    for lineno, line in enumerate(_lines(path), 1):
        fields = line.split()
        where = f"{path}:{lineno}"
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit():
            report.skip("line", where, f"expected '<image number> <synset>', got {line.strip()!r}")
        elif fields[1] not in known:
            report.skip("line", where, f"unknown synset {fields[1]!r}")
        else:
            rows.append((int(fields[0]), fields[1], where))
    return rows
