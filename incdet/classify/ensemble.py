"""An ensemble of region classifiers: softmax probabilities averaged, as GoogLeNet's six-model entry.

Crops of several images go through each member in the same batches, so images with few proposals
still fill a batch on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from incdet.classify.checkpoint import RegionClassifierSpec, load_region_classifier
from incdet.errors import InputError
from incdet.regions.warp import warp_image_regions
from incdet.structures import RegionScores


class Ensemble(nn.Module):
    """Scores the regions of a batch of images with every member and averages their softmax outputs.

    Members may differ in architecture, crop size and context padding (each warps the
    regions its own way), but must share one class list.
    """

    def __init__(self, specs: Sequence[RegionClassifierSpec], models: Sequence[nn.Module], batch_size: int = 256) -> None:
        super().__init__()
        if not specs:
            raise ValueError("an ensemble needs at least one model")
        self.specs = list(specs)
        # Channels-last halves CPU inference time of these many-small-conv networks
        # (oneDNN's preferred layout) and suits GPU tensor cores as well.
        self.members = nn.ModuleList(model.to(memory_format=torch.channels_last) for model in models)
        self.batch_size = batch_size

    @property
    def classes(self) -> tuple[str, ...]:
        return self.specs[0].classes

    @torch.inference_mode()
    def forward(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> list[RegionScores]:
        """The (N_i, 4) xyxy pixel boxes of each normalised (3, H_i, W_i) image -> their (N_i, C + 1)
        probabilities, one :class:`RegionScores` per image."""
        counts = [len(b) for b in boxes]
        probs = torch.zeros(sum(counts), len(self.classes) + 1, device=images[0].device if images else "cpu")
        for spec, model in zip(self.specs, self.members):
            for start, crops in warped_batches(images, boxes, spec.input_size, spec.context_pad, self.batch_size):
                probs[start : start + len(crops)] += model(crops).logits.softmax(dim=1)
        return [RegionScores(p) for p in (probs / len(self.members)).split(counts)]


def warped_batches(
    images: Sequence[Tensor], boxes: Sequence[Tensor], size: int, context_pad: int, batch_size: int
) -> Iterator[tuple[int, Tensor]]:
    """The context-padded crops of every image's boxes, in order, ``batch_size`` at a time (a batch may
    span images): ``(index of its first box over all images, (B, 3, size, size) channels-last crops)``."""
    if not sum(len(b) for b in boxes):
        return
    owner = torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, b in enumerate(boxes)])
    flat = torch.cat([b.reshape(-1, 4) for b in boxes])
    for start in range(0, len(flat), batch_size):
        chunk, chunk_owner = flat[start : start + batch_size], owner[start : start + batch_size]
        crops = [warp_image_regions(images[i], chunk[(chunk_owner == i).to(chunk.device)], size, context_pad)
                 for i in chunk_owner.unique().tolist()]
        yield start, torch.cat(crops).contiguous(memory_format=torch.channels_last)


def load_ensemble(paths: Sequence[str | Path], device: torch.device | str = "cpu", expected_classes: Sequence[str] | None = None) -> Ensemble:
    """Load checkpoints into an ensemble, refusing any whose class list differs."""
    specs, models = [], []
    reference, source = (tuple(expected_classes), "the expected class list") if expected_classes is not None else (None, "")
    for path in paths:
        spec, model = load_region_classifier(path, device)
        if reference is not None and spec.classes != reference:
            raise InputError(path, f"checkpoint classes {list(spec.classes)} differ from {source} {list(reference)}")
        reference, source = spec.classes, f"those of {path}"
        specs.append(spec)
        models.append(model)
    return Ensemble(specs, models)
