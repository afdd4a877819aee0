"""Greedy detection-to-ground-truth matching with ILSVRC-DET's rules, vectorised.

The rules (the devkit's ``eval_detection.m``; COCO and VOC differ only where noted in
docs/evaluation.md):

* Within one image and class, detections are taken in decreasing score (ties: the order in
  the input). Each takes, among the ground truths not matched yet, the one with the highest
  IoU that reaches that ground truth's threshold (ties in IoU: the first in annotation order).
  It is then a true positive and that ground truth is used up, so a second detection of the
  same object is a false positive unless another object is there for it.
* Threshold per ground truth: ``min(t, w*h / ((w+10)*(h+10)))`` with the small-object rule,
  else ``t`` (``w``, ``h``: the ground truth's size in pixels).
* A detection that matches no regular ground truth but reaches the threshold of a difficult
  one is ignored (neither true nor false positive), as VOC and COCO treat difficult / crowd.
"""

from __future__ import annotations

import numpy as np

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1

# ILSVRC devkit: pixelTolerance = 10 in the small-object threshold.
PIXEL_TOLERANCE = 10.0


def iou_thresholds(gt_boxes: np.ndarray, iou_threshold: float, small_object_rule: bool) -> np.ndarray:
    """Per-ground-truth IoU threshold, lowered for objects so small that a few pixels of
    annotation noise alone would keep a perfect detection below ``iou_threshold``."""
    if not small_object_rule:
        return np.full(len(gt_boxes), float(iou_threshold))
    w = gt_boxes[:, 2] - gt_boxes[:, 0]
    h = gt_boxes[:, 3] - gt_boxes[:, 1]
    return np.minimum(float(iou_threshold), w * h / ((w + PIXEL_TOLERANCE) * (h + PIXEL_TOLERANCE)))


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` for every row i (continuous xyxy, float64).

    Hand-written because torchvision's ``box_iou`` computes every pair of two sets; here the
    pairs are already the join of detections and ground truths of the same image and class,
    and only those are needed.
    """
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def match_detections(det_group: np.ndarray, det_boxes: np.ndarray, det_rank: np.ndarray,
                     gt_group: np.ndarray, gt_boxes: np.ndarray, gt_thresholds: np.ndarray,
                     gt_difficult: np.ndarray) -> np.ndarray:
    """Status of every detection: TRUE_POSITIVE, FALSE_POSITIVE or IGNORED.

    ``*_group`` is one integer per (image, class) pair; only equal groups can match.
    ``det_rank`` orders the detections (lower first) within a group; ground truths are in
    annotation order. The join of same-group pairs and the IoUs are computed at once; the
    inherently sequential greedy step runs only over detections that compete for a ground
    truth, the rest are decided in bulk.
    """
    num_dets = len(det_group)
    status = np.full(num_dets, FALSE_POSITIVE, np.int8)
    if num_dets == 0 or len(gt_group) == 0:
        return status
    gt_order = np.argsort(gt_group, kind="stable")
    sorted_groups = gt_group[gt_order]
    start = np.searchsorted(sorted_groups, det_group, "left")
    count = np.searchsorted(sorted_groups, det_group, "right") - start
    det_idx = np.repeat(np.arange(num_dets), count)
    within = np.arange(len(det_idx)) - np.repeat(np.cumsum(count) - count, count)
    gt_idx = gt_order[np.repeat(start, count) + within]
    iou = paired_iou(det_boxes[det_idx], gt_boxes[gt_idx])
    hit = (iou > 0) & (iou >= gt_thresholds[gt_idx])
    det_idx, gt_idx, iou = det_idx[hit], gt_idx[hit], iou[hit]
    difficult = gt_difficult[gt_idx]

    regular = ~difficult
    r_det, r_gt, r_iou = det_idx[regular], gt_idx[regular], iou[regular]
    contested = np.bincount(r_gt, minlength=len(gt_group))[r_gt] > 1
    det_contested = np.zeros(num_dets, bool)
    det_contested[r_det[contested]] = True
    status[r_det[~det_contested[r_det]]] = TRUE_POSITIVE  # the only claimant of all its candidates

    keep = det_contested[r_det]
    c_det, c_gt, c_iou = r_det[keep], r_gt[keep], r_iou[keep]
    order = np.lexsort((c_gt, -c_iou, det_rank[c_det]))  # by detection rank, then best IoU, then gt order
    used: set[int] = set()
    current, taken = -1, False
    for d, g in zip(c_det[order].tolist(), c_gt[order].tolist()):
        if d != current:
            current, taken = d, False
        if not taken and g not in used:
            used.add(g)
            status[d] = TRUE_POSITIVE
            taken = True

    on_difficult = np.zeros(num_dets, bool)
    on_difficult[det_idx[difficult]] = True
    status[on_difficult & (status != TRUE_POSITIVE)] = IGNORED
    return status
