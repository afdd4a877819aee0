"""From a batch of images and regions to the crops a step trains on: warp, then mirror.

R-CNN warps each context-padded region to the network's square input (``roi_align``, on the
normalised image, so outside the image is the mean colour), and training mirrors half the crops.
On a GPU this runs in the LightningModule, on the device; training on the CPU, the DataLoader
workers run it (:class:`CropsInWorkers`) and prepare the next batches while the step trains.
"""

from __future__ import annotations

import torch
from torch import Tensor

from incdet.regions.warp import warp_regions
from incdet.train.regions.dataset import (
    RegionBatch,
    RegionSample,
    SkippedImage,
    collate_regions,
)
from incdet.transforms import normalize


def warp_batch(batch: RegionBatch, input_size: int, context_pad: int) -> Tensor:
    """The batch's regions as normalised (N, 3, S, S) crops, in the order of ``batch.rois``.

    Each image is warped at its own size, never with the batch's padding: exactly the crops the
    detector warps from that image (samples up to a pixel outside an image take its edge colour,
    further out the mean), so training and detection see the same input. Images of one size share
    one ``roi_align`` call (every demo image: one call a batch).
    """
    images = normalize(batch.images)
    crops = images.new_empty(len(batch.rois), images.shape[1], input_size, input_size)
    owner = batch.rois[:, 0].long()
    sizes, group = torch.unique(batch.sizes, dim=0, return_inverse=True)
    for g, (height, width) in enumerate(sizes.tolist()):
        members = torch.nonzero(group == g).flatten()
        same = images[:, :, :height, :width] if len(members) == len(images) else images[members, :, :height, :width]
        position = torch.full((len(images),), -1, dtype=torch.long, device=owner.device)
        position[members] = torch.arange(len(members), device=owner.device)
        rows = torch.nonzero(position[owner] >= 0).flatten()
        rois = torch.cat([position[owner[rows]][:, None].to(batch.rois.dtype), batch.rois[rows, 1:]], dim=1)
        crops[rows] = warp_regions(same, rois, input_size, context_pad)
    return crops


def mirror_regions(crops: Tensor, targets: Tensor, mirrored: Tensor) -> tuple[Tensor, Tensor]:
    """Flip the ``mirrored`` (N,) crops left-right; their regression targets' horizontal offset
    (column 0 of ``encode_deltas``) changes sign, the other three do not."""
    crops = torch.where(mirrored[:, None, None, None], crops.flip(-1), crops)
    dx = torch.where(mirrored, -targets[:, 0], targets[:, 0])
    return crops, torch.cat([dx[:, None], targets[:, 1:]], dim=1)


def prepare_crops(batch: RegionBatch, input_size: int, context_pad: int, flip: bool) -> RegionBatch:
    """The batch with its ``crops`` (and, with ``flip``, half of them mirrored, ``targets`` to match);
    the images, no longer needed, are dropped."""
    crops, targets = warp_batch(batch, input_size, context_pad), batch.targets
    if flip:
        crops, targets = mirror_regions(crops, targets, torch.rand(len(crops), device=crops.device) < 0.5)
    return batch._replace(images=batch.images[:0], crops=crops, targets=targets)


class CropsInWorkers:
    """:func:`collate_regions` then :func:`prepare_crops`: the collate function of CPU training."""

    def __init__(self, input_size: int, context_pad: int, flip: bool) -> None:
        self.input_size, self.context_pad, self.flip = input_size, context_pad, flip

    def __call__(self, items: list[RegionSample | SkippedImage]) -> RegionBatch:
        return prepare_crops(collate_regions(items), self.input_size, self.context_pad, self.flip)
