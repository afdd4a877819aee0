"""An ensemble of region classifiers: softmax probabilities averaged, as GoogLeNet's six-model entry.

Members that carry a box regressor also move each proposal to one box per class; those boxes are
averaged (in pixels) over the members that have one and clipped to the image, so an ensemble may
mix members with and without regressors. Crops of several images go through each member in the
same batches, so images with few proposals still fill a batch on the device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
R = TypeVar("R")
MAX_LANES = 8


class Ensemble(nn.Module):
    """Scores the regions of a batch of images with every member and averages their softmax outputs.

    Members may differ in architecture, crop size and context padding (each warps the
    regions its own way), but must share one class list. ``bbox_reg``: apply the regressors of the
    members that have one (False: every class keeps the proposal's box). ``precision`` (fp32, bf16,
    fp16): what the networks compute in under autocast; warps, softmax and box decoding stay float32.
    ``runtime``: ``torch``, or ``onnxruntime`` (fp32 on the CPU: :class:`OnnxMember`, the same
    networks exported once, faster there, each batch warped and run on one of ``lanes`` threads).
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
        # onnxruntime's lanes (in_order): as many as torch has threads now (OMP_NUM_THREADS, or Ray's CPUs), at
        # least 2, so that a warp always runs beside a network, and at most MAX_LANES, as each lane holds a
        # batch's activations (22 MB for the shipped 80 px member at batch 256, measured; a full-size
        # member's are many times that); beyond, each lane's session gets several threads.
        threads = torch.get_num_threads()
        self.lanes = min(MAX_LANES, max(2, threads))
        self.sessions = ([OnnxMember(spec, model, threads=max(1, threads // self.lanes)) for spec, model in zip(self.specs, self.members)]
                         if runtime == "onnxruntime" else None)

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
        layout = torch.channels_last if self.sessions is None else torch.contiguous_format
        batches = [(index, start, stop) for index in range(len(self.specs)) for start, stop in batch_bounds(len(flat), self.batch_size)]

        def warp(batch: tuple[int, int, int]) -> Tensor:
            index, start, stop = batch
            spec = self.specs[index]
            return warp_batch(images, boxes, start, stop, spec.input_size, spec.context_pad, layout)

        if self.sessions is not None:  # each lane warps a batch and runs its member, on a thread of its own
            scored = in_order(lambda batch: self.sessions[batch[0]](warp(batch)), batches, self.lanes)
        else:  # the next batch is warped on a thread while the device runs this one
            scored = (self._member(index, crops, device) for (index, _, _), crops in zip(batches, in_order(warp, batches, 1)))
        # In the batches' order, whichever lane finishes first: the sums are then the same bits every run.
        for (index, start, stop), (member_probs, deltas) in zip(batches, scored):
            probs[start:stop] += member_probs
            if moved is not None and self.specs[index].bbox_reg:
                moved[start:stop] += decode_deltas(deltas, flat[start:stop])
        probs /= len(self.members)
        if moved is None:
            return [RegionScores(p) for p in probs.split(counts)]
        moved = (moved / self.regressors).view(-1, outputs, 4)
        return [RegionScores(p, clip_boxes_to_image(b, tuple(image.shape[-2:])))
                for p, b, image in zip(probs.split(counts), moved.split(counts), images)]

    def _member(self, index: int, crops: Tensor, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Member ``index``'s float32 probabilities and box deltas (None without a regressor) for ``crops``, by torch."""
        with autocast(device, self.precision):
            out = self.members[index](crops)
        return out.logits.float().softmax(dim=1), None if out.deltas is None else out.deltas.float()


def in_order(function: Callable[[T], R], items: Sequence[T], lanes: int) -> Iterator[R]:
    """``function`` of each item, computed on ``lanes`` threads, yielded in the items' order; at most
    ``lanes + 1`` items are in progress or done and waiting, so one is always ready to start.

    Why threads: the warp (``roi_align``) and onnxruntime release the GIL, and the warp's kernel is
    single-threaded. With one lane the caller's own work (a member on the device) overlaps the next
    warp. On the CPU, ``lanes`` single-threaded onnxruntime runs beside their warps keep every core
    busy without the barriers of one run split over the cores (`bench/detect.py --sections
    streaming commit` measures the whole path)."""
    with ThreadPoolExecutor(lanes, thread_name_prefix="incdet-lane") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > lanes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def batch_bounds(count: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` of each batch of ``count`` boxes (the last may be short)."""
    for start in range(0, count, batch_size):
        yield start, min(start + batch_size, count)


def warp_batch(images: Sequence[Tensor], boxes: Sequence[Tensor], start: int, stop: int, size: int, context_pad: int,
               memory_format: torch.memory_format = torch.channels_last) -> Tensor:
    """The ``(stop - start, 3, size, size)`` context-padded crops of the boxes ``[start, stop)`` of all
    images' boxes in order (a batch may span images), in ``memory_format`` (channels-last for torch;
    onnxruntime's graphs take contiguous NCHW).

    The batch's boxes are consecutive slices of a few images' boxes, found from the counts alone (no
    per-box owner index, which would have to be compared on the device)."""
    crops, low = [], 0
    for image, image_boxes in zip(images, boxes):
        high = low + len(image_boxes)
        if low < stop and high > start:
            crops.append(warp_image_regions(image, image_boxes[max(start, low) - low : min(stop, high) - low], size, context_pad))
        low = high
    batch = crops[0] if len(crops) == 1 else torch.cat(crops)
    return batch.contiguous(memory_format=memory_format)


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
