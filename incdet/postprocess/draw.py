"""Labelled boxes drawn on an image, for people to look at detections."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from incdet.structures import Detections

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990"]


def draw_detections(image: np.ndarray, dets: Detections, classes: Sequence[str], min_score: float = 0.5) -> np.ndarray:
    """RGB uint8 image with every detection scoring >= ``min_score`` boxed and labelled."""
    keep = dets.scores >= min_score
    boxes, scores, labels = dets.boxes[keep].cpu(), dets.scores[keep].cpu(), dets.labels[keep].cpu()
    if not len(boxes):
        return image
    captions = [f"{classes[c]} {s:.2f}" for c, s in zip(labels.tolist(), scores.tolist())]
    colors = [_PALETTE[c % len(_PALETTE)] for c in labels.tolist()]
    canvas = torch.from_numpy(image).permute(2, 0, 1)
    drawn = draw_bounding_boxes(canvas, boxes, captions, colors=colors, width=2)
    return drawn.permute(1, 2, 0).numpy()
