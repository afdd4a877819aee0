"""MultiBox proposals for images, and merging them into selective search's (what ``detect`` calls).

A MultiBox network outputs K scored boxes per image; like Erhan et al. we keep the top-scoring
ones after non-maximum suppression (so near-copies do not use up the top-N budget) and scale them
back to the image's own pixel coordinates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import nms, remove_small_boxes

from incdet.devices import resolve_device
from incdet.errors import InputError
from incdet.io import read_image
from incdet.multibox.checkpoint import load_multibox
from incdet.multibox.network import MultiBoxNet, resize_image, to_pixels
from incdet.proposals.merge import MergedProposals, merge_proposals
from incdet.structures import SkipReport
from incdet.weights import DEMO_MULTIBOX

TOP_N = 200  # the GoogLeNet entry added 200 MultiBox boxes per image
NMS_IOU = 0.7
DEDUP_IOU = 0.7
MIN_SIZE = 4.0  # pixels; a degenerate box cannot be warped into a meaningful crop
BATCH = 16


@dataclass(frozen=True)
class MultiBoxSettings:
    """How many MultiBox boxes to keep and how near-copies are removed."""

    top_n: int = TOP_N
    nms_iou: float = NMS_IOU
    dedup_iou: float = DEDUP_IOU

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {self.top_n}")
        for name in ("nms_iou", "dedup_iou"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


def select_boxes(
    boxes: torch.Tensor, logits: torch.Tensor, width: int, height: int, top_n: int = TOP_N, nms_iou: float = NMS_IOU
) -> tuple[np.ndarray, np.ndarray]:
    """One image's network output -> its top-N pixel boxes after NMS, and their scores (descending)."""
    pixels = to_pixels(boxes.float(), width, height)
    scores = torch.sigmoid(logits.float())
    keep = remove_small_boxes(pixels, MIN_SIZE)
    pixels, scores = pixels[keep], scores[keep]
    keep = nms(pixels, scores, nms_iou)[:top_n]  # nms returns indices by decreasing score
    return pixels[keep].cpu().numpy().astype(np.float32), scores[keep].cpu().numpy()


@torch.no_grad()
def predict_images(
    model: MultiBoxNet, images: Sequence[np.ndarray], top_n: int = TOP_N, nms_iou: float = NMS_IOU
) -> list[tuple[np.ndarray, np.ndarray]]:
    """MultiBox (boxes, scores) for RGB uint8 images of any sizes, in batches."""
    device = model.priors.device
    results = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        batch = torch.stack([resize_image(im, model.input_size) for im in chunk]).to(device)
        out = model(batch)
        for im, boxes, logits in zip(chunk, out.boxes, out.logits):
            results.append(select_boxes(boxes, logits, im.shape[1], im.shape[0], top_n, nms_iou))
    return results


@dataclass
class MultiBoxRun:
    """Per image: its (boxes, scores), the seconds it took, and the images that could not be read."""

    proposals: dict[Path, tuple[np.ndarray, np.ndarray]]
    seconds: dict[Path, float]
    skipped: SkipReport


def propose_multibox(
    paths: Sequence[Path],
    checkpoint: str | Path,
    settings: MultiBoxSettings = MultiBoxSettings(),
    device: torch.device | str = "cpu",
    on_done: Callable[[Path], None] | None = None,
) -> MultiBoxRun:
    """MultiBox proposals for image files; unreadable images are listed, never fatal."""
    _, model = load_multibox(checkpoint, device)
    run = MultiBoxRun({}, {}, SkipReport())
    for path in paths:
        start = time.perf_counter()
        try:
            image = read_image(path)
        except InputError as exc:
            run.skipped.skip_error("image", exc)
            continue
        run.proposals[path] = predict_images(model, [image], settings.top_n, settings.nms_iou)[0]
        run.seconds[path] = time.perf_counter() - start
        if on_done:
            on_done(path)
    return run


def merged_image_proposals(
    paths: Sequence[Path],
    ss_boxes: Mapping[Path, np.ndarray],
    checkpoint: str | Path,
    settings: MultiBoxSettings = MultiBoxSettings(),
    device: torch.device | str = "cpu",
    on_done: Callable[[Path], None] | None = None,
) -> tuple[dict[Path, MergedProposals], MultiBoxRun]:
    """Selective-search boxes of each image in ``ss_boxes`` merged with its top-N MultiBox boxes.

    Images without selective-search boxes are not run; images MultiBox cannot read are left out
    of the result and listed in the returned run's ``skipped``.
    """
    run = propose_multibox([p for p in paths if p in ss_boxes], checkpoint, settings, device, on_done)
    merged = {
        path: merge_proposals(ss_boxes[path], boxes, settings.dedup_iou) for path, (boxes, _) in run.proposals.items()
    }
    return merged, run


def detect_checkpoint(multibox: str | None, disabled: bool, default_applies: bool) -> Path | None:
    """The MultiBox network ``incdet detect`` merges in: ``--multibox``; else the shipped demo one when
    ``default_applies`` (the demo region model on searched proposals) and it exists; none with ``--no-multibox``."""
    if disabled:
        return None
    if multibox:
        return Path(multibox)
    return DEMO_MULTIBOX if default_applies and DEMO_MULTIBOX.is_file() else None


def with_multibox(
    paths: Sequence[Path],
    boxes: Mapping[Path, np.ndarray],
    skipped: list[str],
    seconds: dict[Path, float],
    checkpoint: Path,
    top_n: int,
    device: str,
) -> tuple[dict[Path, np.ndarray], list[str], dict[Path, float]]:
    """``incdet detect``'s proposals with MultiBox merged in: (boxes, skipped reasons, seconds per image)."""
    device = resolve_device(device)
    try:
        settings = MultiBoxSettings(top_n=top_n)
    except ValueError as exc:
        raise InputError(None, f"--multibox-top-n: {exc}") from None
    merged, run = merged_image_proposals(paths, boxes, checkpoint, settings, device)
    skipped = skipped + run.skipped.messages()
    seconds = {path: seconds.get(path, 0.0) + run.seconds.get(path, 0.0) for path in merged}
    if merged:
        mean = {key: np.mean([m.counts()[key] for m in merged.values()]) for key in ("total", "multibox", "both")}
        print(
            f"proposals: selective search + MultiBox top-{top_n} ({checkpoint.name}): {mean['total']:.0f}/image, of which "
            f"{mean['multibox']:.0f} only MultiBox proposed and {mean['both']:.0f} both stages"
        )
    return {path: m.boxes for path, m in merged.items()}, skipped, seconds
