"""R-CNN region warping, batched on the device with ``torchvision.ops.roi_align``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from incdet.boxes import add_context

# R-CNN pads 16 px of context around a 227 px warp; GoogLeNet's crops are 224 px.
RCNN_CONTEXT_PAD = 16
RCNN_INPUT_SIZE = 224
# Samples per output pixel and axis at most; beyond, a region is warped from a coarser pyramid level
# (as mipmapping does). 2 bounds every crop to 4 samples per output pixel, so a region costs about the
# same on a 10000 px photo as on a 500 px one (bench/huge_image.py); measured on the demo test split
# with the shipped classifier, mAP 84.3% (83.6% with 8, which kept every demo region at level 0).
MAX_SAMPLES = 2


def default_context_pad(input_size: int) -> int:
    """R-CNN's 16 px of context at 224 px, scaled to another crop size."""
    return round(RCNN_CONTEXT_PAD * input_size / RCNN_INPUT_SIZE)


def _pyramid_levels(boxes: Tensor, output_size: int) -> Tensor:
    """Per (context-padded, xyxy) region, the level of a 2x image pyramid to warp it from: 0 unless its
    side exceeds MAX_SAMPLES x output_size, then the level at which it does not."""
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1).clamp(min=1.0)
    return torch.ceil(torch.log2(side / (output_size * MAX_SAMPLES))).clamp(min=0).long()


@dataclass
class WarpSource:
    """An RGB uint8 image reduced to the finest pyramid level any of its regions is warped from, and
    its (N, 4) xyxy boxes in the reduced pixels; ``scale`` (4,) maps those back: ``boxes * scale``."""

    image: np.ndarray
    boxes: Tensor
    scale: Tensor


def warp_source(image: np.ndarray, boxes: Tensor, crops: Sequence[tuple[int, int]]) -> WarpSource:
    """``image`` reduced before it becomes a float tensor, when no region of ``boxes`` is warped from
    its full resolution for any of the ``(output_size, context_pad)`` crops.

    :func:`warp_regions` warps a region larger than ``MAX_SAMPLES`` x the crop size from a pooled
    level of the image. If even the smallest region is that large (a 10000 px photo, whose proposals
    are all hundreds of pixels), the finer levels are never read: the image is box-filtered down to
    the finest level needed here (``cv2.INTER_AREA``, on the 8-bit pixels: a float copy of a 10000 px
    photo alone is 1.2 GB), and warping it gives the crops the full image would. Images whose regions
    need their full resolution (every demo image) are returned as they are.
    """
    height, width = image.shape[:2]
    level = 0
    if len(boxes):
        level = min(int(_pyramid_levels(add_context(boxes, size, pad), size).min()) for size, pad in crops)
    if level == 0:
        return WarpSource(image, boxes, boxes.new_ones(4))
    small = cv2.resize(image, (-(-width >> level), -(-height >> level)), interpolation=cv2.INTER_AREA)
    scale = boxes.new_tensor([width / small.shape[1], height / small.shape[0]]).repeat(2)
    return WarpSource(small, boxes / scale, scale)


def warp_regions(images: Tensor, rois: Tensor, output_size: int, context_pad: int) -> Tensor:
    """Warp every region of interest to an ``output_size`` square crop, in one call per pyramid level.

    ``images`` is a normalised (B, 3, H, W) batch; ``rois`` is (K, 5) rows of
    (batch index, x1, y1, x2, y2). The warp is anisotropic, as R-CNN's; the adaptive
    sampling ratio averages several samples per output pixel, so large boxes are
    downscaled without aliasing. Its cost grows with the box's area, so a region more than
    ``MAX_SAMPLES`` times the crop size is warped from a 2^k-times average-pooled copy of the
    image instead (the same box filter, computed once per level): every crop then costs at most
    ``MAX_SAMPLES ** 2`` samples per output pixel, however large the image and its boxes.

    ``rois`` may stay on the CPU while the images are on a GPU: the levels are then chosen on the
    CPU and only each call's regions are sent, so the device is never waited for.
    """
    padded = torch.cat([rois[:, :1], add_context(rois[:, 1:], output_size, context_pad)], dim=1).float()
    levels = _pyramid_levels(padded[:, 1:], output_size)
    if not len(padded) or int(levels.max()) == 0:
        return _roi_align(images, padded.to(images.device, images.dtype, non_blocking=True), output_size, 1.0)
    crops = images.new_empty(len(padded), images.shape[1], output_size, output_size)
    level_images = images
    for level in range(int(levels.max()) + 1):
        if level:
            level_images = F.avg_pool2d(level_images, 2, ceil_mode=True)
        chosen = torch.nonzero(levels == level).flatten()
        if len(chosen):
            level_rois = padded[chosen].to(images.device, images.dtype, non_blocking=True)
            crops[chosen.to(images.device, non_blocking=True)] = _roi_align(level_images, level_rois, output_size, 0.5**level)
    return crops


def _roi_align(images: Tensor, rois: Tensor, output_size: int, spatial_scale: float) -> Tensor:
    """torchvision's ``roi_align`` kernel (adaptive sampling ratio, half-pixel aligned), always.

    ``torchvision.ops.roi_align`` swaps its CUDA kernel for a pure-Python version when deterministic
    algorithms are on, because the kernel's *backward* adds with atomics. That version sizes one
    sampling grid by the largest region of the call: hundreds of GB for a training batch. A warp never
    back-propagates into the image, and the kernel's forward computes each output on its own thread,
    deterministic as it is, so the op is called directly (a training run's ``deterministic: true``
    then costs nothing here); an image that needs gradients keeps torchvision's own choice.
    """
    if images.requires_grad:
        return roi_align(images, rois, output_size, spatial_scale=spatial_scale, sampling_ratio=-1, aligned=True)
    return torch.ops.torchvision.roi_align(images, rois, spatial_scale, output_size, output_size, -1, True)


def warp_image_regions(image: Tensor, boxes: Tensor, output_size: int, context_pad: int) -> Tensor:
    """``warp_regions`` for the (N, 4) boxes of a single normalised (3, H, W) image."""
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    return warp_regions(image[None], rois, output_size, context_pad)
