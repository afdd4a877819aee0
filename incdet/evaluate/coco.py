"""The same ground truth and detections as pycocotools objects, to cross-check incdet's numbers.

pycocotools evaluates with one IoU threshold for every object (no small-object rule) and
treats ``iscrowd`` regions as ignorable, so difficult objects become crowd regions here —
which pycocotools matches by intersection over the *detection's* area, a different rule from
incdet's (see docs/evaluation.md). Cross-checks therefore use ground truth without difficult
objects and with the small-object rule off.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from incdet.data.records import Annotation


def to_coco_gt(gts: Sequence[Annotation], classes: Sequence[str]) -> COCO:
    """A COCO ground-truth object; image ids are 1-based positions in ``gts``, category ids
    1-based positions in ``classes`` (incdet's detection ``category_id`` convention)."""
    index = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for image_id, ann in enumerate(gts, 1):
        images.append({"id": image_id, "file_name": ann.filename, "width": ann.width, "height": ann.height})
        for box, label, difficult in zip(ann.boxes.astype(np.float64).tolist(), ann.labels, ann.difficult.tolist()):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": index[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": int(difficult)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def to_coco_results(coco_gt: COCO, dets: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> list[dict]:
    """Detection records with pycocotools' image and category ids (copies: loadRes edits them)."""
    image_id = {img["file_name"]: img["id"] for img in coco_gt.dataset["images"]}
    index = {name: i + 1 for i, name in enumerate(classes)}
    return [{"image_id": image_id[d["file_name"]], "category_id": index[d["category_name"]],
             "bbox": list(d["bbox"]), "score": d["score"]} for d in dets]


def coco_evaluate(coco_gt: COCO, results: list[dict], iou_threshold: float = 0.5, max_dets: int = 100,
                  quiet: bool = True) -> COCOeval:
    """COCOeval at one IoU threshold, one area range (all) and ``max_dets`` per image and class,
    evaluated and accumulated."""
    out = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        coco_dt = coco_gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.iouThrs = np.array([float(iou_threshold)])
        evaluator.params.areaRng = [[0.0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.params.maxDets = [int(max_dets)]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def coco_class_ap(evaluator: COCOeval) -> np.ndarray:
    """AP per category (101-point interpolated); NaN for categories without ground truth."""
    precision = evaluator.eval["precision"][0, :, :, 0, 0]  # [recall thresholds, categories]
    return np.where((precision > -1).all(axis=0), precision.mean(axis=0), np.nan)
