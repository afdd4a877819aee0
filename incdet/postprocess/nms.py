"""Per-class NMS, score threshold and top-k over an image's scored regions."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from incdet.structures import Detections, Proposals, RegionScores

RCNN_NMS_IOU = 0.3  # R-CNN's greedy per-class NMS threshold


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
