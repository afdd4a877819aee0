"""Region-classifier training data, R-CNN style: labelled proposals warped on the fly.

Every proposal of every training image (plus the ground-truth boxes themselves, as R-CNN
does) is labelled once; batches then draw a fixed fraction of foreground regions
(R-CNN: 32 of 128) and warp them in one ``roi_align`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from incdet.data.records import Annotation
from incdet.regions.labels import BACKGROUND, label_proposals
from incdet.regions.warp import warp_regions
from incdet.transforms import image_to_tensor


@dataclass
class RegionTable:
    """All labelled regions of a split; ``images`` are normalised (3, H, W) tensors."""

    images: list[Tensor]
    image_index: Tensor
    boxes: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def build_region_table(
    images: Sequence[np.ndarray], annotations: Sequence[Annotation], proposals: Sequence[np.ndarray], classes: Sequence[str], fg_iou: float
) -> RegionTable:
    """Label every proposal and ground-truth box of every image (labels 1-based, 0 = background)."""
    class_index = {name: i + 1 for i, name in enumerate(classes)}
    index, boxes, labels = [], [], []
    for i, (ann, props) in enumerate(zip(annotations, proposals)):
        gt_boxes = torch.as_tensor(ann.boxes)
        gt_labels = torch.tensor([class_index[name] for name in ann.labels], dtype=torch.long)
        regions = torch.cat([torch.as_tensor(props, dtype=torch.float32).reshape(-1, 4), gt_boxes])
        region_labels, _ = label_proposals(regions, gt_boxes, gt_labels, fg_iou)
        index.append(torch.full((len(regions),), i, dtype=torch.long))
        boxes.append(regions)
        labels.append(region_labels)
    return RegionTable([image_to_tensor(im) for im in images], torch.cat(index), torch.cat(boxes), torch.cat(labels))


class ForegroundFractionSampler(Sampler[list[int]]):
    """Batches with a fixed share of foreground regions, the rest background (R-CNN's 1:3)."""

    def __init__(self, labels: Tensor, batch_size: int, fg_fraction: float, num_batches: int, seed: int) -> None:
        self.foreground = torch.nonzero(labels != BACKGROUND).flatten()
        self.background = torch.nonzero(labels == BACKGROUND).flatten()
        if not len(self.foreground) or not len(self.background):
            raise ValueError("training needs both foreground and background regions; check the annotations and fg_iou")
        self.num_fg = max(1, round(batch_size * fg_fraction))
        self.num_bg = batch_size - self.num_fg
        self.num_batches = num_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        for _ in range(self.num_batches):
            fg = self.foreground[torch.randint(len(self.foreground), (self.num_fg,), generator=generator)]
            bg = self.background[torch.randint(len(self.background), (self.num_bg,), generator=generator)]
            yield torch.cat([fg, bg]).tolist()


class WarpRegions:
    """Collate function: region indices -> (crops, labels), one ``roi_align`` per batch.

    Images of the batch are zero-padded to a common size; zero is the mean colour after
    normalisation, so padding is the same mean fill R-CNN uses outside the image.
    """

    def __init__(self, table: RegionTable, input_size: int, context_pad: int, flip: bool) -> None:
        self.table = table
        self.input_size = input_size
        self.context_pad = context_pad
        self.flip = flip

    def __call__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        rows = torch.as_tensor(indices)
        used, batch_index = torch.unique(self.table.image_index[rows], return_inverse=True)
        images = [self.table.images[i] for i in used.tolist()]
        height, width = max(im.shape[1] for im in images), max(im.shape[2] for im in images)
        batch = torch.stack([F.pad(im, (0, width - im.shape[2], 0, height - im.shape[1])) for im in images])
        rois = torch.cat([batch_index[:, None].float(), self.table.boxes[rows]], dim=1)
        crops = warp_regions(batch, rois, self.input_size, self.context_pad)
        if self.flip:
            mirrored = torch.rand(len(crops)) < 0.5
            crops[mirrored] = crops[mirrored].flip(-1)
        return crops, self.table.labels[rows]


def fixed_validation_batches(labels: Tensor, batch_size: int, fg_fraction: float, seed: int) -> list[list[int]]:
    """Every foreground region of the split plus a fixed sample of background in the training ratio."""
    foreground = torch.nonzero(labels != BACKGROUND).flatten()
    background = torch.nonzero(labels == BACKGROUND).flatten()
    wanted = min(len(background), round(len(foreground) * (1 - fg_fraction) / fg_fraction))
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.cat([foreground, background[torch.randperm(len(background), generator=generator)[:wanted]]])
    return [chosen[i : i + batch_size].tolist() for i in range(0, len(chosen), batch_size)]


class RegionDataModule(L.LightningDataModule):
    """Training and validation region tables, sampled and warped as R-CNN fine-tuning does."""

    def __init__(
        self, train: RegionTable, val: RegionTable | None, *, input_size: int, context_pad: int,
        batch_size: int, fg_fraction: float, batches_per_epoch: int, num_workers: int = 0, seed: int = 0,
    ) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.input_size, self.context_pad = input_size, context_pad
        self.batch_size, self.fg_fraction = batch_size, fg_fraction
        self.batches_per_epoch, self.num_workers, self.seed = batches_per_epoch, num_workers, seed

    def train_dataloader(self) -> DataLoader:
        sampler = ForegroundFractionSampler(self.train.labels, self.batch_size, self.fg_fraction, self.batches_per_epoch, self.seed)
        collate = WarpRegions(self.train, self.input_size, self.context_pad, flip=True)
        return DataLoader(range(len(self.train)), batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        batches = fixed_validation_batches(self.val.labels, self.batch_size, self.fg_fraction, self.seed)
        collate = WarpRegions(self.val, self.input_size, self.context_pad, flip=False)
        return DataLoader(range(len(self.val)), batch_sampler=batches, collate_fn=collate, num_workers=self.num_workers)
