"""Box maths shared by the stages, in one place (the rest comes from ``torchvision.ops``).

Every function takes and returns float (N, 4) ``(x1, y1, x2, y2)`` boxes in continuous pixel
coordinates (right and bottom edges exclusive, so a box's width is ``x2 - x1``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import clip_boxes_to_image

# Fast R-CNN's normalisation of regression targets (divide by std 0.1, 0.1, 0.2, 0.2), written as
# torchvision's BoxCoder weights. BoxCoder (torchvision's own encoder, used by its Faster R-CNN) lives
# in a private module, but torchvision is pinned, and the round-trip test pins its behaviour.
REGRESSION_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_CODER = BoxCoder(REGRESSION_WEIGHTS)


def add_context(boxes: Tensor, output_size: int, context_pad: int) -> Tensor:
    """Dilate boxes so that ``context_pad`` pixels of context surround them once warped.

    The warp maps the dilated box onto ``output_size`` pixels, of which the original box
    must fill the central ``output_size - 2 * context_pad``.
    """
    scale = output_size / (output_size - 2 * context_pad)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([centers - half, centers + half], dim=1)


def encode_deltas(proposals: Tensor, targets: Tensor) -> Tensor:
    """R-CNN's regression targets (appendix C) for each proposal towards its ground-truth box:
    ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))`` over centres and sizes,
    multiplied by :data:`REGRESSION_WEIGHTS` so the four have similar scale. (N, 4) -> (N, 4)."""
    return _CODER.encode_single(targets.float(), proposals.float())


def decode_deltas(deltas: Tensor, proposals: Tensor) -> Tensor:
    """The inverse of :func:`encode_deltas`: boxes moved by ``deltas``. ``deltas`` (N, 4 * K) holds K
    boxes per proposal (one per class); returns (N, 4 * K). Sizes are capped at exp(4.135) = 62.5x the
    proposal, as torchvision caps them, so a wild prediction cannot overflow."""
    return _CODER.decode_single(deltas.float(), proposals.float())


def clip_and_check(boxes: Tensor, width: int, height: int, min_size: float = 1.0) -> tuple[Tensor, Tensor]:
    """Boxes clipped to a ``width`` x ``height`` image, and a mask of those still usable: finite, and at
    least ``min_size`` px on each side after clipping (a box far outside the image is not)."""
    finite = torch.isfinite(boxes).all(dim=1)
    clipped = clip_boxes_to_image(torch.where(finite[:, None], boxes, torch.zeros_like(boxes)), (height, width))
    sides = clipped[:, 2:] - clipped[:, :2]
    return clipped, finite & (sides >= min_size).all(dim=1)
