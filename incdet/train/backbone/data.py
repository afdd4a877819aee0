"""Backbone training data: the GoogLeNet paper's augmentation (section 6) with torchvision transforms v2.

Training images go through PIL because PIL has the "area" (box) resampling the paper draws
among its four interpolations; tensors support only nearest/bilinear/bicubic.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import InterpolationMode, v2

from incdet.data.classification import ClassificationSet
from incdet.errors import InputError
from incdet.nets.multicrop import crop_plan, extract_crops
from incdet.train.backbone.config import AugmentConfig
from incdet.train.resume import ResumableDataModule
from incdet.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_to_uint8_tensor,
    normalize,
)

log = logging.getLogger(__name__)

# GoogLeNet section 6: "bilinear, area, nearest neighbor and cubic, with equal probability".
INTERPOLATIONS = (InterpolationMode.BILINEAR, InterpolationMode.BOX, InterpolationMode.NEAREST, InterpolationMode.BICUBIC)


class TrainTransform:
    """RGB uint8 array -> augmented, normalised (3, size, size) float tensor."""

    def __init__(self, size: int, aug: AugmentConfig) -> None:
        modes = INTERPOLATIONS if aug.random_interpolation else INTERPOLATIONS[:1]
        crops = [
            v2.RandomResizedCrop(size, scale=(aug.min_area, aug.max_area), ratio=(aug.min_aspect, aug.max_aspect), interpolation=mode, antialias=True)
            for mode in modes
        ]
        steps: list[v2.Transform] = [v2.RandomChoice(crops)]
        if aug.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if aug.brightness or aug.contrast or aug.saturation or aug.hue:
            # ColorJitter applies its distortions in random order, as Howard's do.
            steps.append(v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue))
        steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))]
        self.pipeline = v2.Compose(steps)

    def __call__(self, image: np.ndarray) -> Tensor:
        return self.pipeline(Image.fromarray(image))


class CenterCropTransform:
    """The single-crop evaluation (shorter side to size / 0.875, centre square), normalised."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> Tensor:
        plan = crop_plan(1, image.shape[0], image.shape[1], self.size)
        return normalize(extract_crops(image_to_uint8_tensor(image), plan, self.size))[0]


class ImageDataset(Dataset):
    """(image, label) pairs of a ClassificationSet; an unreadable image is reported and yields None."""

    def __init__(self, data: ClassificationSet, transform) -> None:
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        try:
            image = self.data.image(index)
        except InputError as exc:
            log.warning("skipped %s", exc)
            return None
        return self.transform(image), int(self.data.labels[index])


def collate_readable(batch: list) -> object:
    """Collate the samples that could be read; None when none could."""
    kept = [sample for sample in batch if sample is not None]
    return default_collate(kept) if kept else None


class BackboneDataModule(ResumableDataModule):
    """Shuffled augmented training batches (each DDP rank its share; resumable mid-epoch) and
    centre-crop validation."""

    def __init__(self, train: ClassificationSet, val: ClassificationSet | None, *, input_size: int, augment: AugmentConfig,
                 batch_size: int, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.input_size, self.augment = input_size, augment
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        sampler = self.train_sampler(dataset, self.batch_size, self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last, num_workers=self.num_workers,
                          collate_fn=collate_readable, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        # A last batch of one image would break batch norm; drop the remainder when there is a full batch.
        dataset = ImageDataset(self.train, TrainTransform(self.input_size, self.augment))
        return self._loader(dataset, shuffle=True, drop_last=len(self.train) > self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return self._loader(ImageDataset(self.val, CenterCropTransform(self.input_size)), shuffle=False, drop_last=False)
