"""An ensemble of region classifiers: softmax probabilities averaged, as GoogLeNet's six-model entry."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from incdet.classify.checkpoint import RegionClassifierSpec, load_region_classifier
from incdet.errors import InputError
from incdet.regions.warp import warp_image_regions
from incdet.structures import RegionScores


class Ensemble(nn.Module):
    """Scores regions of one image with every member and averages their softmax outputs.

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
    def forward(self, image: Tensor, boxes: Tensor) -> RegionScores:
        """(N, 4) boxes of a normalised (3, H, W) image -> their (N, C + 1) probabilities."""
        probs = image.new_zeros(len(boxes), len(self.classes) + 1)
        for spec, model in zip(self.specs, self.members):
            for start in range(0, len(boxes), self.batch_size):
                chunk = boxes[start : start + self.batch_size]
                crops = warp_image_regions(image, chunk, spec.input_size, spec.context_pad).contiguous(memory_format=torch.channels_last)
                probs[start : start + len(chunk)] += model(crops).logits.softmax(dim=1)
        return RegionScores(probs / len(self.members))


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
