"""An ensemble of region classifiers: softmax probabilities averaged, as GoogLeNet's six-model entry.

Members that carry a box regressor also move each proposal to one box per class; those boxes are
averaged (in pixels) over the members that have one and clipped to the image, so an ensemble may
mix members with and without regressors. Crops of several images go through each member in the
same batches, so images with few proposals still fill a batch on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence, TypeVar

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from incdet.boxes import decode_deltas
from incdet.classify.classifier_file import RegionClassifierSpec, load_region_classifier
from incdet.classify.onnx_runtime import OnnxMember
from incdet.devices import autocast
from incdet.errors import InputError
from incdet.model_file import read_spec
from incdet.regions.warp import warp_image_regions
from incdet.structures import RegionScores

T = TypeVar("T")


class Ensemble(nn.Module):
    """Scores the regions of a batch of images with every member and averages their softmax outputs.

    Members may differ in architecture, crop size and context padding (each warps the
    regions its own way), but must share one class list. ``bbox_reg``: apply the regressors of the
    members that have one (False: every class keeps the proposal's box). ``precision`` (fp32, bf16,
    fp16): what the networks compute in under autocast; warps, softmax and box decoding stay float32.
    ``runtime``: ``torch``, or ``onnxruntime`` (fp32 on the CPU: :class:`OnnxMember`, the same
    networks exported once, faster there).
    """

    def __init__(self, specs: Sequence[RegionClassifierSpec], models: Sequence[nn.Module], batch_size: int = 256,
                 bbox_reg: bool = True, precision: str = "fp32", runtime: str = "torch") -> None:
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
        self.runtime = runtime
        self.sessions = [OnnxMember(spec, model) for spec, model in zip(self.specs, self.members)] if runtime == "onnxruntime" else None

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
        batches = ((index, start, crops) for index, spec in enumerate(self.specs)
                   for start, crops in warped_batches(images, boxes, spec.input_size, spec.context_pad, self.batch_size,
                                                      torch.channels_last if self.sessions is None else torch.contiguous_format))
        for index, start, crops in _made_ahead(batches):
            member_probs, deltas = self._member(index, crops, device)
            probs[start : start + len(crops)] += member_probs
            if moved is not None and self.specs[index].bbox_reg:
                moved[start : start + len(crops)] += decode_deltas(deltas, flat[start : start + len(crops)])
        probs /= len(self.members)
        if moved is None:
            return [RegionScores(p) for p in probs.split(counts)]
        moved = (moved / self.regressors).view(-1, outputs, 4)
        return [RegionScores(p, clip_boxes_to_image(b, tuple(image.shape[-2:])))
                for p, b, image in zip(probs.split(counts), moved.split(counts), images)]


    def _member(self, index: int, crops: Tensor, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Member ``index``'s float32 probabilities and box deltas (None without a regressor) for ``crops``."""
        if self.sessions is not None:
            return self.sessions[index](crops)
        with autocast(device, self.precision):
            out = self.members[index](crops)
        return out.logits.float().softmax(dim=1), None if out.deltas is None else out.deltas.float()


def _made_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` in order, each next one made on a thread while the caller uses the current one.

    On the CPU the warp (``roi_align``, one thread) is a third of the ensemble's work; made ahead,
    it overlaps the networks (both release the GIL) instead of leaving their cores idle. On a GPU
    it plans the next batch's calls while the device runs this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="incdet-warp") as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def warped_batches(
    images: Sequence[Tensor], boxes: Sequence[Tensor], size: int, context_pad: int, batch_size: int,
    memory_format: torch.memory_format = torch.channels_last,
) -> Iterator[tuple[int, Tensor]]:
    """The context-padded crops of every image's boxes, in order, ``batch_size`` at a time (a batch may
    span images): ``(index of its first box over all images, (B, 3, size, size) crops)`` in
    ``memory_format`` (channels-last for torch; onnxruntime's graphs take contiguous NCHW).

    A batch's boxes are consecutive slices of a few images' boxes, found from the counts alone (no
    per-box owner index, which would have to be compared on the device)."""
    ends = [0]
    for b in boxes:
        ends.append(ends[-1] + len(b))
    for start in range(0, ends[-1], batch_size):
        stop = min(start + batch_size, ends[-1])
        crops = [warp_image_regions(images[i], boxes[i][max(start, lo) - lo : min(stop, hi) - lo], size, context_pad)
                 for i, (lo, hi) in enumerate(zip(ends, ends[1:])) if lo < stop and hi > start]
        batch = crops[0] if len(crops) == 1 else torch.cat(crops)
        yield start, batch.contiguous(memory_format=memory_format)


def load_ensemble(paths: Sequence[str | Path], device: torch.device | str = "cpu", expected_classes: Sequence[str] | None = None,
                  bbox_reg: bool = True, precision: str = "fp32", runtime: str = "torch") -> Ensemble:
    """Load checkpoints into an ensemble, refusing any whose class list differs (naming both files)."""
    loaded = [(path, *load_region_classifier(path, device)) for path in paths]
    specs = check_classes([(path, spec) for path, spec, _ in loaded], expected_classes)
    return Ensemble(specs, [model for _, _, model in loaded], bbox_reg=bbox_reg, precision=precision, runtime=runtime)


def read_ensemble_specs(paths: Sequence[str | Path], expected_classes: Sequence[str] | None = None) -> list[RegionClassifierSpec]:
    """The members' specs, checked as :func:`load_ensemble` checks them, without building a network."""
    return check_classes([(path, read_spec(path, RegionClassifierSpec)) for path in paths], expected_classes)


def check_classes(members: Sequence[tuple[str | Path, RegionClassifierSpec]],
                  expected_classes: Sequence[str] | None = None) -> list[RegionClassifierSpec]:
    """The specs of ``members`` (path, spec), refusing any whose class list differs from the expected
    one or, without it, from the first member's (naming both files)."""
    reference, source = (tuple(expected_classes), "the expected class list") if expected_classes is not None else (None, "")
    for path, spec in members:
        if reference is not None and spec.classes != reference:
            raise InputError(path, f"checkpoint classes {list(spec.classes)} differ from {source} {list(reference)}")
        reference, source = spec.classes, f"those of {path}"
    return [spec for _, spec in members]
