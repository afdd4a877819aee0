"""Top-1 / top-5 of classification backbones with 1, 10 and 144 crops and ensembles (GoogLeNet table 3).

Softmax probabilities are averaged over the crops of an image and then over the models, as
the paper does ("simple averaging" beat max-pooling over crops). Counts are accumulated batch
by batch, so ImageNet's 50,000 validation images need no per-image score storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from incdet.data.classification import ClassificationSet
from incdet.errors import InputError
from incdet.nets.backbone_file import BackboneSpec
from incdet.nets.multicrop import CROP_COUNTS, crop_plan, extract_crops
from incdet.transforms import image_to_uint8_tensor, normalize

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One line of the table: a model (or the ensemble) evaluated with one crop scheme."""

    name: str
    models: int
    crops: int
    correct_top1: int = 0
    correct_top5: int = 0
    images: int = 0

    @property
    def cost(self) -> int:
        """Forward passes per image, the paper's "cost" column."""
        return self.models * self.crops

    @property
    def top1(self) -> float:
        return self.correct_top1 / max(self.images, 1)

    @property
    def top5(self) -> float:
        return self.correct_top5 / max(self.images, 1)

    def to_json(self) -> dict:
        return {"name": self.name, "models": self.models, "crops": self.crops, "cost": self.cost, "images": self.images,
                "top1": round(self.top1, 6), "top5": round(self.top5, 6), "top5_error": round(1 - self.top5, 6)}


class MultiCropDataset(Dataset):
    """Per image: for each input size, the uint8 crops of every requested scheme, concatenated in ``crops`` order."""

    def __init__(self, data: ClassificationSet, sizes: Sequence[int], crops: Sequence[int]) -> None:
        self.data, self.sizes, self.crops = data, sorted(set(sizes)), list(crops)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[dict[int, Tensor], int] | None:
        try:
            image = self.data.image(index)
        except InputError as exc:
            log.warning("skipped %s", exc)
            return None
        pixels = image_to_uint8_tensor(image)
        views = {}
        for size in self.sizes:
            plan = [c for n in self.crops for c in crop_plan(n, image.shape[0], image.shape[1], size)]
            views[size] = extract_crops(pixels, plan, size)
        return views, int(self.data.labels[index])


def _collate(batch: list) -> tuple[dict[int, Tensor], Tensor] | None:
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    views = {size: torch.stack([v[size] for v, _ in kept]) for size in kept[0][0]}
    return views, torch.tensor([label for _, label in kept])


def _hits(probs: Tensor, labels: Tensor, k: int) -> int:
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices
    return int((top == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def _crop_probs(model: nn.Module, crops: Tensor, chunk: int, device: torch.device) -> Tensor:
    """(B, C, 3, S, S) uint8 -> (B, C, K) softmax probabilities, ``chunk`` crops per forward pass."""
    flat = crops.flatten(0, 1)
    probs = [model(normalize(flat[i : i + chunk].to(device))).softmax(dim=1).cpu() for i in range(0, len(flat), chunk)]
    return torch.cat(probs).view(crops.shape[0], crops.shape[1], -1)


def evaluate_backbones(
    backbones: Sequence[tuple[str, BackboneSpec, nn.Module]], data: ClassificationSet, crops: Sequence[int] = CROP_COUNTS, *,
    batch_images: int = 4, batch_crops: int = 256, num_workers: int = 0, device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> list[Row]:
    """Rows for every (model, crops) and, with several models, the ensemble (softmax averaged over models)."""
    if not backbones:
        raise ValueError("no backbone to evaluate")
    bad = [c for c in crops if c not in CROP_COUNTS]
    if bad:
        raise ValueError(f"crops must be among {CROP_COUNTS}, got {bad}")
    classes = backbones[0][1].classes
    for name, spec, _ in backbones:
        if spec.classes != classes:
            raise InputError(name, f"its {len(spec.classes)} classes differ from those of {backbones[0][0]}; an ensemble needs one class list")
    if list(classes) != data.classes:
        raise InputError(data.source, f"the dataset's classes ({len(data.classes)}) are not the backbones' ({len(classes)}) in the same order")
    device = torch.device(device)
    crops = list(crops)
    offsets = [sum(crops[:i]) for i in range(len(crops) + 1)]
    rows = {(m, n): Row(name, 1, n) for m, (name, _, _) in enumerate(backbones) for n in crops}
    if len(backbones) > 1:
        rows |= {(-1, n): Row(f"ensemble of {len(backbones)}", len(backbones), n) for n in crops}
    loader = DataLoader(MultiCropDataset(data, [spec.input_size for _, spec, _ in backbones], crops),
                        batch_size=batch_images, num_workers=num_workers, collate_fn=_collate)
    for batch in loader:
        if batch is None:
            continue
        views, labels = batch
        ensemble = {n: torch.zeros(len(labels), len(classes)) for n in crops}
        for m, (_, spec, model) in enumerate(backbones):
            probs = _crop_probs(model.to(device).eval(), views[spec.input_size], batch_crops, device)
            for i, n in enumerate(crops):
                mean = probs[:, offsets[i] : offsets[i + 1]].mean(dim=1)
                ensemble[n] += mean
                _count(rows[(m, n)], mean, labels)
        if len(backbones) > 1:
            for n in crops:
                _count(rows[(-1, n)], ensemble[n], labels)
        if progress is not None:
            progress(len(labels))
    return list(rows.values())


def _count(row: Row, probs: Tensor, labels: Tensor) -> None:
    row.correct_top1 += _hits(probs, labels, 1)
    row.correct_top5 += _hits(probs, labels, 5)
    row.images += len(labels)
