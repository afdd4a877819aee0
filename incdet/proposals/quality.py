"""How well proposals can possibly serve the detector: a ground-truth object that no proposal
overlaps enough can never be detected by a region classifier, whatever its accuracy.

Every function takes one proposal array and one ground-truth array per image (float (N, 4) xyxy),
in the same image order; proposals are in ranked order, so "the first N" is a cheaper setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou


def _check(proposals: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray]) -> None:
    if len(proposals) != len(ground_truth):
        raise ValueError(f"{len(proposals)} proposal arrays but {len(ground_truth)} ground-truth arrays")
    if not sum(len(g) for g in ground_truth):
        raise ValueError("no ground-truth boxes to measure proposals against")


def _iou_per_image(proposals: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """(G, P) IoU of every ground-truth box with every proposal."""
    gt = torch.as_tensor(np.asarray(ground_truth, np.float32).reshape(-1, 4))
    props = torch.as_tensor(np.asarray(proposals, np.float32).reshape(-1, 4))
    return box_iou(gt, props).numpy()


def best_overlaps(
    proposals: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], top_n: int | None = None
) -> np.ndarray:
    """Best IoU of each ground-truth box with the first ``top_n`` proposals of its image (all if None),
    concatenated over images; 0 where an image has no proposals."""
    _check(proposals, ground_truth)
    best = []
    for props, gt in zip(proposals, ground_truth):
        iou = _iou_per_image(props[:top_n], gt)
        best.append(iou.max(axis=1) if iou.shape[1] else np.zeros(len(iou)))
    return np.concatenate(best).astype(np.float64)


def coverage(
    proposals: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], iou: float = 0.5, top_n: int | None = None
) -> float:
    """Fraction of ground-truth boxes with some proposal at IoU >= ``iou`` (the paper's 92% -> 93%)."""
    return float((best_overlaps(proposals, ground_truth, top_n) >= iou).mean())


def mabo(
    proposals: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    labels: Sequence[Sequence[str]] | None = None,
    top_n: int | None = None,
) -> float:
    """Mean average best overlap (Uijlings et al.): the best IoU of each ground-truth box, averaged
    per class and then over classes, so frequent classes do not dominate. Without ``labels`` it is
    the plain mean over all ground-truth boxes (average best overlap)."""
    best = best_overlaps(proposals, ground_truth, top_n)
    if labels is None:
        return float(best.mean())
    flat = np.array([label for image_labels in labels for label in image_labels], dtype=object)
    if len(flat) != len(best):
        raise ValueError(f"{len(flat)} labels but {len(best)} ground-truth boxes")
    return float(np.mean([best[flat == name].mean() for name in sorted(set(flat))]))


def recall_at(
    proposals: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], iou: float, counts: Sequence[int]
) -> np.ndarray:
    """Coverage at ``iou`` when only the first N proposals of each image are kept, for each N in
    ``counts`` (the recall-vs-number-of-proposals curve)."""
    _check(proposals, ground_truth)
    hits = np.zeros(len(counts))
    total = 0
    for props, gt in zip(proposals, ground_truth):
        iou_matrix = _iou_per_image(props, gt)
        total += len(iou_matrix)
        for i, n in enumerate(counts):
            if iou_matrix.shape[1] and n > 0:
                hits[i] += (iou_matrix[:, :n].max(axis=1) >= iou).sum()
    return hits / total
