"""An ensemble of region classifiers: softmax probabilities averaged, as GoogLeNet's six-model entry.

Members that carry a box regressor also move each proposal to one box per class; those boxes are
averaged (in pixels) over the members that have one and clipped to the image, so an ensemble may
mix members with and without regressors. Crops of several images go through each member in the
same batches, so images with few proposals still fill a batch on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from incdet.boxes import decode_deltas
from incdet.classify.checkpoint import RegionClassifierSpec, load_region_classifier
from incdet.devices import autocast
from incdet.errors import InputError
from incdet.regions.warp import warp_image_regions
from incdet.structures import RegionScores


class Ensemble(nn.Module):
    """Scores the regions of a batch of images with every member and averages their softmax outputs.

    Members may differ in architecture, crop size and context padding (each warps the
    regions its own way), but must share one class list. ``bbox_reg``: apply the regressors of the
    members that have one (False: every class keeps the proposal's box). ``precision`` (fp32, bf16,
    fp16): what the networks compute in under autocast; warps, softmax and box decoding stay float32.
    """

    def __init__(self, specs: Sequence[RegionClassifierSpec], models: Sequence[nn.Module], batch_size: int = 256,
                 bbox_reg: bool = True, precision: str = "fp32") -> None:
        super().__init__()
        if not specs:
            raise ValueError("an ensemble needs at least one model")
        self.specs = list(specs)
        # Channels-last halves CPU inference time of these many-small-conv networks
        # (oneDNN's preferred layout) and suits GPU tensor cores as well.
        self.members = nn.ModuleList(model.to(memory_format=torch.channels_last) for model in models)
        self.batch_size = batch_size
        self.bbox_reg = bbox_reg
        self.precision = precision

    @property
    def classes(self) -> tuple[str, ...]:
        return self.specs[0].classes

    @property
    def regressors(self) -> int:
        """How many members' box regressors are applied."""
        return sum(spec.bbox_reg for spec in self.specs) if self.bbox_reg else 0

    @torch.inference_mode()
    def forward(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> list[RegionScores]:
        """The (N_i, 4) xyxy pixel boxes of each normalised (3, H_i, W_i) image -> their (N_i, C + 1)
        probabilities and, when a member regresses boxes, (N_i, C + 1, 4) xyxy pixel boxes per class,
        one :class:`RegionScores` per image, on the images' device.

        The boxes may stay on the CPU (as proposals come): the warp then plans its ``roi_align`` calls
        there and sends only their regions to the device, so the loop never waits on the device.
        """
        counts = [len(b) for b in boxes]
        device = images[0].device if images else torch.device("cpu")
        flat = torch.cat([b.reshape(-1, 4) for b in boxes]) if boxes else torch.zeros(0, 4)
        flat = flat.to(device, non_blocking=True)
        outputs = len(self.classes) + 1
        probs = torch.zeros(len(flat), outputs, device=device)
        moved = torch.zeros(len(flat), outputs * 4, device=device) if self.regressors else None
        for spec, model in zip(self.specs, self.members):
            for start, crops in warped_batches(images, boxes, spec.input_size, spec.context_pad, self.batch_size):
                with autocast(device, self.precision):
                    out = model(crops)
                probs[start : start + len(crops)] += out.logits.float().softmax(dim=1)
                if moved is not None and spec.bbox_reg:
                    moved[start : start + len(crops)] += decode_deltas(out.deltas.float(), flat[start : start + len(crops)])
        probs /= len(self.members)
        if moved is None:
            return [RegionScores(p) for p in probs.split(counts)]
        moved = (moved / self.regressors).view(-1, outputs, 4)
        return [RegionScores(p, clip_boxes_to_image(b, tuple(image.shape[-2:])))
                for p, b, image in zip(probs.split(counts), moved.split(counts), images)]


def warped_batches(
    images: Sequence[Tensor], boxes: Sequence[Tensor], size: int, context_pad: int, batch_size: int
) -> Iterator[tuple[int, Tensor]]:
    """The context-padded crops of every image's boxes, in order, ``batch_size`` at a time (a batch may
    span images): ``(index of its first box over all images, (B, 3, size, size) channels-last crops)``.

    A batch's boxes are consecutive slices of a few images' boxes, found from the counts alone (no
    per-box owner index, which would have to be compared on the device)."""
    ends = [0]
    for b in boxes:
        ends.append(ends[-1] + len(b))
    for start in range(0, ends[-1], batch_size):
        stop = min(start + batch_size, ends[-1])
        crops = [warp_image_regions(images[i], boxes[i][max(start, lo) - lo : min(stop, hi) - lo], size, context_pad)
                 for i, (lo, hi) in enumerate(zip(ends, ends[1:])) if lo < stop and hi > start]
        yield start, torch.cat(crops).contiguous(memory_format=torch.channels_last)


def load_ensemble(paths: Sequence[str | Path], device: torch.device | str = "cpu", expected_classes: Sequence[str] | None = None,
                  bbox_reg: bool = True, precision: str = "fp32") -> Ensemble:
    """Load checkpoints into an ensemble, refusing any whose class list differs (naming both files)."""
    specs, models = [], []
    reference, source = (tuple(expected_classes), "the expected class list") if expected_classes is not None else (None, "")
    for path in paths:
        spec, model = load_region_classifier(path, device)
        if reference is not None and spec.classes != reference:
            raise InputError(path, f"checkpoint classes {list(spec.classes)} differ from {source} {list(reference)}")
        reference, source = spec.classes, f"those of {path}"
        specs.append(spec)
        models.append(model)
    return Ensemble(specs, models, bbox_reg=bbox_reg, precision=precision)
