"""Per-class NMS, score threshold and top-k over an image's scored regions, and :class:`SelectionSettings`,
the three settings that control them (a detector's settings, as a model bundle records them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms

from incdet.structures import Detections, Proposals, RegionScores

RCNN_NMS_IOU = 0.3  # R-CNN's greedy per-class NMS threshold


@dataclass(frozen=True)
class SelectionSettings:
    """Stage 4: candidates above ``score_threshold``, per-class NMS at ``nms_iou``, the best
    ``max_detections`` per image (R-CNN's values by default)."""

    score_threshold: float = 0.05
    nms_iou: float = RCNN_NMS_IOU
    max_detections: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.score_threshold < 1:
            raise ValueError(f"score_threshold must be in [0, 1) (scores are probabilities), got {self.score_threshold}")
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be at least 1, got {self.max_detections}")


def select_detections(
    proposals: Proposals, scores: RegionScores, score_threshold: float = 0.05, nms_iou: float = RCNN_NMS_IOU,
    max_detections: int = 100,
) -> Detections:
    """Turn an image's proposals and their class probabilities into its detections.

    Every (region, class) pair above ``score_threshold`` is a candidate, boxed by the class's
    regressed box when there is one, else by the proposal; greedy NMS runs per class and the
    ``max_detections`` best survivors are kept, best first.
    """
    class_probs = scores.probs[:, 1:]
    region, label = torch.nonzero(class_probs > score_threshold, as_tuple=True)
    candidate_scores = class_probs[region, label]
    boxes = proposals.boxes.to(class_probs.device)
    candidates = boxes[region] if scores.boxes is None else scores.boxes[region, label + 1]
    keep = batched_nms(candidates, candidate_scores, label, nms_iou)[:max_detections]
    return Detections(candidates[keep], candidate_scores[keep], label[keep], proposals.source.to(class_probs.device)[region[keep]])
