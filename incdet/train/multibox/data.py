"""MultiBox training data: whole images resized to the network input, boxes normalised by image size.

Every image of a split is decoded and resized once (the demo splits fit in memory many times
over); batches then only flip and stack. Boxes are normalised by the size of the image file as
decoded, the same size the detector will later scale predictions back to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from incdet.data.dataset import load_dataset
from incdet.errors import InputError
from incdet.io import read_image
from incdet.multibox.network import resize_image
from incdet.multibox.priors import mirror_boxes, normalise_boxes
from incdet.train.resume import ResumableDataModule

log = logging.getLogger(__name__)


@dataclass
class MultiBoxTable:
    """A split as the network sees it: (N, 3, S, S) normalised images and per-image (G, 4) normalised boxes."""

    images: Tensor
    boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def load_split(path: str | Path, split: str | None, input_size: int) -> MultiBoxTable:
    """Read ground truth in any format ``load_dataset`` knows (e.g. a VOC annotation folder) and its
    images; bad annotations and unreadable images are skipped and reported (logged)."""
    dataset = load_dataset(path, split=split, purpose="train")  # ILSVRC: without the blacklisted images
    messages = [item.message for item in dataset.skipped.items]
    images, boxes = [], []
    for ann in dataset.annotations:
        try:
            image_path = dataset.image_path(ann)
            image = read_image(image_path)
        except InputError as exc:
            messages.append(str(exc))
            continue
        height, width = image.shape[:2]
        if (ann.width, ann.height) not in ((width, height), (0, 0)):
            messages.append(str(InputError(image_path, f"is {width}x{height} but its annotation says {ann.width}x{ann.height}")))
            continue
        images.append(resize_image(image, input_size))
        boxes.append(np.clip(normalise_boxes(ann.boxes, width, height), 0, 1))
    for message in messages:
        rank_zero_only(log.warning)("skipped %s", message)
    if not images:
        raise InputError(path, "no usable training images")
    return MultiBoxTable(torch.stack(images), boxes)


class MultiBoxDataset(Dataset):
    """(image, boxes) pairs, each image mirrored with probability 1/2 when ``flip`` is set."""

    def __init__(self, table: MultiBoxTable, flip: bool) -> None:
        self.table = table
        self.flip = flip

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, boxes = self.table.images[index], self.table.boxes[index]
        if self.flip and torch.rand(()) < 0.5:
            image, boxes = image.flip(-1), mirror_boxes(boxes)
        return image, torch.from_numpy(np.ascontiguousarray(boxes, np.float32))


def collate(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
    """Images stack; box counts differ per image, so boxes stay a list."""
    return torch.stack([image for image, _ in items]), [boxes for _, boxes in items]


class MultiBoxDataModule(ResumableDataModule):
    def __init__(self, train: MultiBoxTable, val: MultiBoxTable | None, *, batch_size: int, flip: bool, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.flip, self.num_workers, self.seed = batch_size, flip, num_workers, seed

    def train_dataloader(self) -> DataLoader:
        dataset = MultiBoxDataset(self.train, self.flip)
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=self.train_sampler(dataset, self.batch_size, self.seed),
            collate_fn=collate, num_workers=self.num_workers, drop_last=len(self.train) > self.batch_size,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return DataLoader(MultiBoxDataset(self.val, flip=False), batch_size=self.batch_size, collate_fn=collate, num_workers=self.num_workers)
