"""Precision-recall curves and VOC-style all-point average precision."""

from __future__ import annotations

import numpy as np


def precision_recall(is_tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection, for detections already in rank order.

    Recall is NaN when the class has no ground truth (there is nothing to recall).
    """
    tp = np.cumsum(is_tp, dtype=np.float64)
    seen = np.arange(1, len(tp) + 1, dtype=np.float64)
    precision = tp / seen if len(tp) else np.zeros(0)
    recall = tp / num_gt if num_gt > 0 else np.full(len(tp), np.nan)
    return precision, recall


def interpolated_precision(precision: np.ndarray) -> np.ndarray:
    """The monotone envelope: at each point, the best precision at this or any higher recall."""
    return np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the interpolated precision-recall curve, summed over every recall step
    (PASCAL VOC 2010+ and the ILSVRC devkit's ``VOCap``; no 11- or 101-point sampling)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = interpolated_precision(np.concatenate(([0.0], precision, [0.0])))
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))
