"""Per-class NMS, score threshold and top-k over an image's scored regions."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms


class Detections(NamedTuple):
    """Final detections of one image; ``labels`` are 0-based indices into the class list."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def select_detections(
    boxes: Tensor, probs: Tensor, score_threshold: float = 0.05, nms_iou: float = 0.3, max_detections: int = 100
) -> Detections:
    """Turn (N, 4) boxes and (N, C + 1) probabilities (column 0 = background) into detections.

    Every (region, class) pair above ``score_threshold`` is a candidate; greedy NMS runs
    per class (R-CNN used IoU 0.3) and the ``max_detections`` best survivors are kept.
    """
    class_probs = probs[:, 1:]
    region, label = torch.nonzero(class_probs > score_threshold, as_tuple=True)
    scores = class_probs[region, label]
    candidates = boxes[region]
    keep = batched_nms(candidates, scores, label, nms_iou)[:max_detections]
    return Detections(candidates[keep], scores[keep], label[keep])
