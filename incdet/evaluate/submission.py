"""Reading a devkit submission file (``<image_index> <DET_ID> <confidence> <xmin> <ymin> <xmax>
<ymax>`` per line, boxes inclusive; see :mod:`incdet.postprocess.submission`) for evaluation.

The devkit's ``textread`` would misalign every later line after one with a missing field and
silently ignores a DET_ID it has no class for; here each bad line is skipped and reported as
``file:line``, and the good ones are evaluated. Lines become :class:`DetectionArrays` directly
(no per-line dicts: real submission files have millions of lines); the record of a detection is
its 0-based line index.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from incdet.errors import InputError
from incdet.evaluate.detections import DetectionArrays
from incdet.postprocess.submission import from_inclusive
from incdet.structures import SkipReport

FIELDS = ("image_index", "ILSVRC2014_DET_ID", "confidence", "xmin", "ymin", "xmax", "ymax")


def is_submission_file(path: str | Path) -> bool:
    """True for a devkit submission file: a ``.txt`` name, or (other names) content that does
    not start like JSON."""
    path = Path(path)
    if path.suffix.lower() in (".txt", ".json"):
        return path.suffix.lower() == ".txt"
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    return not head.startswith((b"[", b"{"))


def read_submission(path: str | Path, filenames: Sequence[str], image_numbers: Mapping[str, int],
                    classes: Sequence[str], category_ids: Mapping[int, str],
                    report: SkipReport) -> tuple[DetectionArrays, int]:
    """The usable lines of a submission file as DetectionArrays, and the number of lines.

    ``image_numbers`` maps a ground-truth file name to its image-set index; ``category_ids``
    a DET_ID to a class name (incdet's ILSVRC ground truth: the 200 synsets).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read submission file ({exc})") from None
    image_of = {image_numbers[f]: i for i, f in enumerate(filenames) if f in image_numbers}
    class_index = {name: i for i, name in enumerate(classes)}
    label_of = {det_id: class_index[name] for det_id, name in category_ids.items() if name in class_index}
    id_range = f"{min(label_of)}..{max(label_of)}" if label_of else "(none)"
    rows: list[tuple[int, int, int, float, float, float, float, float]] = []
    unknown: dict[int, list[int]] = defaultdict(list)
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        problem = None
        if len(fields) != len(FIELDS):
            problem = f"expected {len(FIELDS)} fields ({' '.join(FIELDS)}), got {len(fields)}"
        else:
            try:
                index, det_id = int(fields[0]), int(fields[1])
                score, x1, y1, x2, y2 = (float(v) for v in fields[2:])
            except ValueError:
                problem = "image_index and DET_ID must be integers, the other fields numbers"
            else:
                if not all(math.isfinite(v) for v in (score, x1, y1, x2, y2)):
                    problem = "non-finite confidence or coordinate"
                elif det_id not in label_of:
                    problem = f"ILSVRC2014_DET_ID {det_id} is not one of {id_range}"
                elif x2 < x1 - 1 or y2 < y1 - 1:
                    problem = "xmax < xmin - 1 or ymax < ymin - 1 (negative width or height)"
                elif index not in image_of:
                    unknown[index].append(lineno)
                    continue
        if problem is not None:
            report.skip("line", f"{path}:{lineno}", f"{problem}: {line.strip()[:80]!r}")
            continue
        rows.append((lineno - 1, image_of[index], label_of[det_id], score, x1, y1, x2, y2))
    for index, where in unknown.items():
        more = ", ..." if len(where) > 1 else ""
        report.skip("detection", path, f"{len(where)} detection(s) (line {where[0]}{more}) for image_index {index}, "
                                       "which is not in the image set", count=len(where))
    table = np.array(rows, np.float64).reshape(-1, 8)
    return DetectionArrays(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2].astype(np.int64),
                           from_inclusive(table[:, 4:8]), table[:, 3].copy()), len(lines)
