"""MultiBox proposals for images, and merging them into selective search's.

A MultiBox network outputs K scored boxes per image; like Erhan et al. we keep the top-scoring
ones after non-maximum suppression (so near-copies do not use up the top-N budget) and scale them
back to the image's own pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import nms, remove_small_boxes

from incdet.multibox.network import MultiBoxNet, resize_image, to_pixels
from incdet.proposals.merge import merge_proposals
from incdet.structures import Proposals

TOP_N = 200  # the GoogLeNet entry added 200 MultiBox boxes per image
NMS_IOU = 0.7
DEDUP_IOU = 0.7
MIN_SIZE = 4.0  # pixels; a degenerate box cannot be warped into a meaningful crop
BATCH = 16


@dataclass(frozen=True)
class MultiBoxSettings:
    """How many MultiBox boxes to keep and how near-copies are removed."""

    top_n: int = TOP_N
    nms_iou: float = NMS_IOU
    dedup_iou: float = DEDUP_IOU

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {self.top_n}")
        for name in ("nms_iou", "dedup_iou"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


def select_boxes(
    boxes: torch.Tensor, logits: torch.Tensor, width: int, height: int, top_n: int = TOP_N, nms_iou: float = NMS_IOU
) -> tuple[np.ndarray, np.ndarray]:
    """One image's network output -> its top-N pixel boxes after NMS, and their scores (descending)."""
    pixels = to_pixels(boxes.float(), width, height)
    scores = torch.sigmoid(logits.float())
    keep = remove_small_boxes(pixels, MIN_SIZE)
    pixels, scores = pixels[keep], scores[keep]
    keep = nms(pixels, scores, nms_iou)[:top_n]  # nms returns indices by decreasing score
    return pixels[keep].cpu().numpy().astype(np.float32), scores[keep].cpu().numpy()


@torch.no_grad()
def predict_images(
    model: MultiBoxNet, images: Sequence[np.ndarray], top_n: int = TOP_N, nms_iou: float = NMS_IOU
) -> list[tuple[np.ndarray, np.ndarray]]:
    """MultiBox (boxes, scores) for RGB uint8 images of any sizes, in batches."""
    device = model.priors.device
    results = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        batch = torch.stack([resize_image(im, model.input_size) for im in chunk]).to(device)
        out = model(batch)
        for im, boxes, logits in zip(chunk, out.boxes, out.logits):
            results.append(select_boxes(boxes, logits, im.shape[1], im.shape[0], top_n, nms_iou))
    return results


def merge_multibox(proposals: Proposals, boxes: np.ndarray, dedup_iou: float = DEDUP_IOU) -> Proposals:
    """One image's selective-search proposals with its top-N MultiBox boxes (score order) merged in, by
    :func:`incdet.proposals.merge.merge_proposals`' rule and order; each box keeps its source."""
    return merge_proposals(proposals.boxes.cpu().numpy(), boxes, dedup_iou)
