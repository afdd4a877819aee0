"""R-CNN region warping, batched on the device with ``torchvision.ops.roi_align``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

from incdet.boxes import add_context

# R-CNN pads 16 px of context around a 227 px warp; GoogLeNet's crops are 224 px.
RCNN_CONTEXT_PAD = 16
RCNN_INPUT_SIZE = 224


def default_context_pad(input_size: int) -> int:
    """R-CNN's 16 px of context at 224 px, scaled to another crop size."""
    return round(RCNN_CONTEXT_PAD * input_size / RCNN_INPUT_SIZE)


def warp_regions(images: Tensor, rois: Tensor, output_size: int, context_pad: int) -> Tensor:
    """Warp every region of interest to an ``output_size`` square crop, all in one call.

    ``images`` is a normalised (B, 3, H, W) batch; ``rois`` is (K, 5) rows of
    (batch index, x1, y1, x2, y2). The warp is anisotropic, as R-CNN's; the adaptive
    sampling ratio averages several samples per output pixel, so large boxes are
    downscaled without aliasing.
    """
    padded = torch.cat([rois[:, :1], add_context(rois[:, 1:], output_size, context_pad)], dim=1)
    return roi_align(images, padded.to(images.dtype), output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def warp_image_regions(image: Tensor, boxes: Tensor, output_size: int, context_pad: int) -> Tensor:
    """``warp_regions`` for the (N, 4) boxes of a single normalised (3, H, W) image."""
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    return warp_regions(image[None], rois, output_size, context_pad)
