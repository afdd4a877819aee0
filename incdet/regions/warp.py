"""R-CNN region warping, batched on the device with ``torchvision.ops.roi_align``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from incdet.boxes import add_context

# R-CNN pads 16 px of context around a 227 px warp; GoogLeNet's crops are 224 px.
RCNN_CONTEXT_PAD = 16
RCNN_INPUT_SIZE = 224
# Samples per output pixel and axis at most; beyond, a region is warped from a coarser pyramid level.
# 8 keeps every region of the demo (<= 300 px for 64 px crops) on the full-resolution image.
MAX_SAMPLES = 8


def default_context_pad(input_size: int) -> int:
    """R-CNN's 16 px of context at 224 px, scaled to another crop size."""
    return round(RCNN_CONTEXT_PAD * input_size / RCNN_INPUT_SIZE)


def _pyramid_levels(rois: Tensor, output_size: int) -> Tensor:
    """Per region, the level of a 2x image pyramid to warp it from: 0 unless its side exceeds
    MAX_SAMPLES x output_size, then the level at which it does not."""
    side = (rois[:, 3:5] - rois[:, 1:3]).amax(dim=1).clamp(min=1.0)
    return torch.ceil(torch.log2(side / (output_size * MAX_SAMPLES))).clamp(min=0).long()


def warp_regions(images: Tensor, rois: Tensor, output_size: int, context_pad: int) -> Tensor:
    """Warp every region of interest to an ``output_size`` square crop, in one call per pyramid level.

    ``images`` is a normalised (B, 3, H, W) batch; ``rois`` is (K, 5) rows of
    (batch index, x1, y1, x2, y2). The warp is anisotropic, as R-CNN's; the adaptive
    sampling ratio averages several samples per output pixel, so large boxes are
    downscaled without aliasing. Its cost grows with the box's area, so a region more than
    ``MAX_SAMPLES`` times the crop size is warped from a 2^k-times average-pooled copy of the
    image instead (the same box filter, computed once per level): every crop then costs at most
    ``MAX_SAMPLES ** 2`` samples per output pixel, however large the image and its boxes.
    """
    padded = torch.cat([rois[:, :1], add_context(rois[:, 1:], output_size, context_pad)], dim=1).to(images.dtype)
    levels = _pyramid_levels(padded, output_size)
    if not len(padded) or int(levels.max()) == 0:
        return roi_align(images, padded, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    crops = images.new_empty(len(padded), images.shape[1], output_size, output_size)
    level_images = images
    for level in range(int(levels.max()) + 1):
        if level:
            level_images = F.avg_pool2d(level_images, 2, ceil_mode=True)
        chosen = torch.nonzero(levels == level).flatten()
        if len(chosen):
            crops[chosen] = roi_align(level_images, padded[chosen], output_size, spatial_scale=0.5**level,
                                      sampling_ratio=-1, aligned=True)
    return crops


def warp_image_regions(image: Tensor, boxes: Tensor, output_size: int, context_pad: int) -> Tensor:
    """``warp_regions`` for the (N, 4) boxes of a single normalised (3, H, W) image."""
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    return warp_regions(image[None], rois, output_size, context_pad)
