"""Detections in the ILSVRC-DET devkit's submission format, the text file its evaluation reads.

One line per detection (ILSVRC2015 devkit readme, section 2.4; ``eval_detection.m`` reads it
with ``textread(f, '%d %d %f %f %f %f %f')``)::

    <image_index> <ILSVRC2014_DET_ID> <confidence> <xmin> <ymin> <xmax> <ymax>

``image_index`` is the image's number in the image set (val.txt's second column), the DET_ID
the class's 1-based index in meta_det.mat, and the box is in the devkit's frame: 0-based
*inclusive* pixel indices, the frame of the XML annotations (the devkit measures a width as
``xmax - xmin + 1``). incdet's continuous ``[x1, y1, x2, y2)`` boxes are therefore written as
``[x1, y1, x2 - 1, y2 - 1]``, and a COCO ``[x, y, w, h]`` as ``[x, y, x + w - 1, y + h - 1]``.

No detection stage writes this format: ``incdet detect`` writes COCO results, and ``incdet
export-submission`` (:mod:`incdet.commands.export_submission`) converts them afterwards with
:func:`write_submission`, numbering images from the image set; :mod:`incdet.evaluate.submission`
reads such a file back for evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from incdet.io import atomic_path


def to_inclusive(boxes: Any) -> np.ndarray:
    """Continuous xyxy boxes (far edge exclusive) -> the devkit's inclusive pixel boxes."""
    out = np.array(boxes, np.float64).reshape(-1, 4)
    out[:, 2:] -= 1.0
    return out


def from_inclusive(boxes: Any) -> np.ndarray:
    """The devkit's inclusive pixel boxes -> continuous xyxy boxes (far edge exclusive)."""
    out = np.array(boxes, np.float64).reshape(-1, 4)
    out[:, 2:] += 1.0
    return out


def _number(value: float) -> str:
    """Integers as integers, other values in Python's shortest form that reads back exactly
    (so scores tie, and boxes overlap, exactly as they did before writing)."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def format_submission(image_index: Any, det_id: Any, scores: Any, boxes: Any) -> str:
    """The lines of a submission file, in the order given. ``boxes`` are continuous xyxy;
    ``image_index`` and ``det_id`` integers, one per detection."""
    index = np.asarray(image_index, np.int64).reshape(-1)
    ids = np.asarray(det_id, np.int64).reshape(-1)
    score = np.asarray(scores, np.float64).reshape(-1)
    box = to_inclusive(boxes)
    if not len(index) == len(ids) == len(score) == len(box):
        raise ValueError("image_index, det_id, scores and boxes need one entry per detection")
    return "".join(f"{i} {c} {_number(s)} {_number(x1)} {_number(y1)} {_number(x2)} {_number(y2)}\n"
                   for i, c, s, (x1, y1, x2, y2) in zip(index.tolist(), ids.tolist(), score.tolist(), box.tolist()))


def write_submission(path: str | Path, image_index: Any, det_id: Any, scores: Any, boxes: Any) -> int:
    """Write a submission file atomically; returns the number of lines."""
    text = format_submission(image_index, det_id, scores, boxes)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return text.count("\n")
