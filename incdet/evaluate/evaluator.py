"""``evaluate_detections``: per-class AP and mAP of detections against ground truth.

Ranking for the precision-recall curve of a class: decreasing score; equal scores keep the
order of their images in the ground-truth list, then their order in the detections list.
This is the order the ILSVRC devkit (MATLAB's stable ``sort``) and pycocotools (stable
``mergesort``) produce, so ties cost or gain nothing relative to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from incdet.data.checks import check_annotation
from incdet.data.records import Annotation
from incdet.errors import InputError
from incdet.evaluate.ap import average_precision, precision_recall
from incdet.evaluate.detections import DetectionArrays, detection_arrays, warn_outside
from incdet.evaluate.matching import (
    IGNORED,
    TRUE_POSITIVE,
    iou_thresholds,
    match_detections,
)
from incdet.structures import SkipReport

SKIPPED = -2  # detection_status of a record that was not evaluated (bad input, unknown image)


@dataclass
class ClassResult:
    name: str
    ap: float  # NaN when the class has no ground truth (it then does not count in the mean)
    num_gt: int  # ground-truth objects, difficult ones not counted
    num_dets: int  # detections ranked (ignored ones not counted)
    num_tp: int
    precision: np.ndarray  # after each ranked detection
    recall: np.ndarray


@dataclass
class EvalResult:
    mean_ap: float  # mean AP over the classes that have ground truth; NaN if none has
    classes: list[ClassResult]
    iou_threshold: float
    small_object_rule: bool
    num_images: int
    skipped: SkipReport = field(default_factory=SkipReport)
    # per input record: 1 true positive, 0 false positive, -1 ignored (difficult object or
    # blacklisted image/class pair), -2 not evaluated (see ``skipped``)
    detection_status: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    @property
    def evaluated_classes(self) -> list[ClassResult]:
        return [c for c in self.classes if c.num_gt > 0]


@dataclass
class _GroundTruth:
    boxes: np.ndarray  # (G, 4) float64
    label: np.ndarray  # (G,) int64
    image: np.ndarray  # (G,) int64
    difficult: np.ndarray  # (G,) bool


def evaluate_detections(gts: Sequence[Annotation], dets: Sequence[Mapping[str, Any]], classes: Sequence[str],
                        iou_threshold: float = 0.5, small_object_rule: bool = True,
                        ignored: Mapping[str, frozenset[str]] | None = None,
                        category_ids: Mapping[int, str] | None = None, source: str = "detections") -> EvalResult:
    """Match ``dets`` (COCO-results records) to ``gts`` and compute AP per class and mAP.

    ``ignored`` maps an image file name to classes left out for that image (ILSVRC's
    validation blacklist: neither its objects nor its detections count). ``category_ids``
    maps a record's ``category_id`` to a class name (default: 1-based index into
    ``classes``). Bad records and ground-truth objects are skipped and listed in
    ``result.skipped`` with ``source`` (the detections file) or the image name.
    """
    classes = _class_list(classes)
    report = SkipReport()
    gts = _unique_images(gts, classes, report)
    sizes = np.array([[a.width, a.height] for a in gts], np.float64).reshape(-1, 2)
    d = detection_arrays(dets, [a.filename for a in gts], sizes, classes, category_ids, report, source)
    return _evaluate(gts, d, len(dets), classes, iou_threshold, small_object_rule, ignored, report)


def evaluate_detection_arrays(gts: Sequence[Annotation], dets: DetectionArrays, num_records: int,
                              classes: Sequence[str], iou_threshold: float = 0.5, small_object_rule: bool = True,
                              ignored: Mapping[str, frozenset[str]] | None = None,
                              report: SkipReport | None = None, source: str = "detections",
                              name: Callable[[int], str] = "detection #{}".format) -> EvalResult:
    """The same for detections already checked and indexed (e.g. read from a devkit submission
    file): ``dets.image`` indexes ``gts``, ``dets.label`` ``classes``, ``dets.boxes`` are
    continuous xyxy, ``dets.record`` < ``num_records`` positions in the input. ``report`` holds
    what the reader skipped; boxes outside their image are warned about in it as well, each
    named ``name(record)``."""
    classes = _class_list(classes)
    report = report if report is not None else SkipReport()
    unique = _unique_images(gts, classes, report)
    if len(unique) != len(gts):
        raise InputError(None, "detections indexed by image need ground truth without duplicate images")
    warn_outside(dets, [a.filename for a in unique], np.array([[a.width, a.height] for a in unique],
                                                             np.float64).reshape(-1, 2), report, source, name)
    return _evaluate(unique, dets, num_records, classes, iou_threshold, small_object_rule, ignored, report)


def _class_list(classes: Sequence[str]) -> list[str]:
    if not classes:
        raise InputError(None, "no classes to evaluate (empty class list)")
    return list(classes)


def _evaluate(gts: list[Annotation], d: DetectionArrays, num_records: int, classes: list[str], iou_threshold: float,
              small_object_rule: bool, ignored: Mapping[str, frozenset[str]] | None, report: SkipReport) -> EvalResult:
    filenames = [a.filename for a in gts]
    gt = _ground_truth(gts, classes)
    status = np.full(num_records, SKIPPED, np.int8)

    blocked = _blacklisted(ignored or {}, filenames, classes, len(classes))
    gt_keep = ~np.isin(gt.image * len(classes) + gt.label, blocked)
    det_blocked = np.isin(d.image * len(classes) + d.label, blocked)

    groups = len(classes)
    det_rank = np.empty(len(d.scores), np.int64)
    det_rank[np.lexsort((d.record, d.image, -d.scores))] = np.arange(len(d.scores))
    det_status = match_detections(
        d.image * groups + d.label, d.boxes, det_rank,
        (gt.image * groups + gt.label)[gt_keep], gt.boxes[gt_keep],
        iou_thresholds(gt.boxes[gt_keep], iou_threshold, small_object_rule), gt.difficult[gt_keep])
    det_status[det_blocked] = IGNORED
    status[d.record] = det_status

    num_gt = np.bincount(gt.label[gt_keep & ~gt.difficult], minlength=len(classes))
    results = _per_class(d, det_status, det_rank, num_gt, classes)
    aps = [r.ap for r in results if r.num_gt > 0]
    return EvalResult(float(np.mean(aps)) if aps else float("nan"), results, float(iou_threshold),
                      bool(small_object_rule), len(gts), report, status)


def _unique_images(gts: Sequence[Annotation], classes: list[str], report: SkipReport) -> list[Annotation]:
    seen: set[str] = set()
    kept = []
    for ann in gts:
        if ann.filename in seen:
            report.skip("image", ann.filename, "appears twice in the ground truth; the second one is not used")
            continue
        seen.add(ann.filename)
        kept.append(check_annotation(ann, classes, report, f"ground truth of {ann.filename}"))
    return kept


def _ground_truth(gts: Sequence[Annotation], classes: list[str]) -> _GroundTruth:
    index = {name: i for i, name in enumerate(classes)}
    counts = [len(a.labels) for a in gts]
    boxes = np.concatenate([a.boxes for a in gts]).astype(np.float64) if gts else np.zeros((0, 4))
    return _GroundTruth(boxes.reshape(-1, 4),
                        np.array([index[label] for a in gts for label in a.labels], np.int64),
                        np.repeat(np.arange(len(gts)), counts).astype(np.int64),
                        np.concatenate([a.difficult for a in gts]).astype(bool) if gts else np.zeros(0, bool))


def _blacklisted(ignored: Mapping[str, frozenset[str]], filenames: list[str], classes: list[str],
                 groups: int) -> np.ndarray:
    """(image, class) group ids that the blacklist removes from the evaluation."""
    image = {name: i for i, name in enumerate(filenames)}
    index = {name: i for i, name in enumerate(classes)}
    return np.array([image[f] * groups + index[c] for f, cs in ignored.items() if f in image
                     for c in cs if c in index], np.int64)


def _per_class(d: DetectionArrays, det_status: np.ndarray, det_rank: np.ndarray, num_gt: np.ndarray,
               classes: list[str]) -> list[ClassResult]:
    ranked = np.lexsort((det_rank, d.label))  # by class, then by rank
    ranked = ranked[det_status[ranked] != IGNORED]
    bounds = np.searchsorted(d.label[ranked], np.arange(len(classes) + 1))
    results = []
    for c, name in enumerate(classes):
        is_tp = det_status[ranked[bounds[c]:bounds[c + 1]]] == TRUE_POSITIVE
        precision, recall = precision_recall(is_tp, int(num_gt[c]))
        ap = average_precision(recall, precision) if num_gt[c] > 0 else float("nan")
        results.append(ClassResult(name, ap, int(num_gt[c]), len(is_tp), int(is_tp.sum()), precision, recall))
    return results
