"""R-CNN fine-tuning labels: which proposals are objects of which class, and which are background."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

BACKGROUND = 0


def label_proposals(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, fg_iou: float = 0.5) -> tuple[Tensor, Tensor]:
    """Label each proposal with its best-overlapping ground truth's class, or background.

    ``gt_labels`` are 1-based class indices (0 is background). A proposal is foreground
    when its IoU with its best ground truth is >= ``fg_iou`` (R-CNN fine-tuning uses 0.5).
    Returns (labels, best IoU) per proposal.
    """
    if len(gt_boxes) == 0:
        return torch.full((len(proposals),), BACKGROUND, dtype=torch.long), proposals.new_zeros(len(proposals))
    best_iou, best_gt = box_iou(proposals, gt_boxes).max(dim=1)
    labels = torch.where(best_iou >= fg_iou, gt_labels[best_gt], torch.full_like(best_gt, BACKGROUND))
    return labels, best_iou
