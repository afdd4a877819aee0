"""R-CNN fine-tuning labels: which proposals are objects of which class, and which are background.

Each proposal is matched to its best-overlapping ground truth; training needs the label (for the
classifier) and, for bounding-box regression, the matched box and its IoU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import box_iou

BACKGROUND = 0


class RegionMatch(NamedTuple):
    """Per proposal: ``labels`` (N,) long, 1-based class or 0 = background; ``iou`` (N,) float, the
    IoU with the best-overlapping ground truth (0 without any); ``gt_index`` (N,) long, the index of
    that ground truth (0 when the image has none: then ``iou`` is 0 and nothing is matched)."""

    labels: Tensor
    iou: Tensor
    gt_index: Tensor


def label_proposals(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, fg_iou: float = 0.5) -> RegionMatch:
    """Label each (N, 4) xyxy proposal with its best-overlapping (G, 4) xyxy ground truth's class, or
    background.

    ``gt_labels`` are 1-based class indices (0 is background). A proposal is foreground when its IoU
    with its best ground truth is >= ``fg_iou`` (R-CNN fine-tuning uses 0.5).
    """
    if len(gt_boxes) == 0:
        zeros = torch.zeros(len(proposals), dtype=torch.long)
        return RegionMatch(torch.full((len(proposals),), BACKGROUND, dtype=torch.long), proposals.new_zeros(len(proposals)), zeros)
    best_iou, best_gt = box_iou(proposals, gt_boxes).max(dim=1)
    labels = torch.where(best_iou >= fg_iou, gt_labels[best_gt], torch.full_like(best_gt, BACKGROUND))
    return RegionMatch(labels, best_iou, best_gt)
