"""Checks every reader applies to ground-truth objects, so a bad object is dropped (and reported)
the same way whatever format it came from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from incdet.data.records import Annotation
from incdet.structures import SkipReport

# ILSVRC's annotation tool wrote about a thousand boxes whose right/bottom index equals the
# image size (one past the last pixel); the devkit evaluates them as they are, so a box may
# reach this far past the image edge before it counts as "outside the image".
EDGE_TOLERANCE_PX = 1.0


def box_problem(box: Sequence[float], width: float, height: float) -> str | None:
    """Why a continuous xyxy box cannot be evaluated, or None if it can."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return "non-finite coordinate"
    if x2 < x1 or y2 < y1:
        return "x2 < x1 or y2 < y1"
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return f"outside the {width:g}x{height:g} image"
    return None


def check_annotation(ann: Annotation, classes: Sequence[str] | None, report: SkipReport, source: str | Path) -> Annotation:
    """Drop (and report) objects that no evaluation can use: an unknown class, a non-finite
    box, ``x2 < x1`` / ``y2 < y1``, or a box outside the image (beyond EDGE_TOLERANCE_PX)."""
    if not len(ann.boxes):
        return ann
    allowed = None if classes is None else set(classes)
    keep = np.ones(len(ann.boxes), bool)
    for i, (box, label) in enumerate(zip(ann.boxes.tolist(), ann.labels)):
        if allowed is not None and label not in allowed:
            problem = f"class {label!r} is not in the class list"
        else:
            problem = box_problem(box, ann.width, ann.height)
        if problem is not None:
            coords = ", ".join(f"{v:g}" for v in box)
            report.skip("object", source, f"object {i} ({label}, continuous box [{coords}]): {problem}")
            keep[i] = False
    if keep.all():
        return ann
    return Annotation(ann.filename, ann.width, ann.height, ann.boxes[keep],
                      [label for label, k in zip(ann.labels, keep) if k], ann.difficult[keep])
