"""Region-classifier training data streamed from disk, one image per item (Fast R-CNN style).

Each item, computed in a DataLoader worker, decodes one image, reads its proposals from the
proposal store, adds the ground-truth boxes to them (as R-CNN does), labels them and samples the
regions a step sees. A batch carries the images as padded uint8 plus the regions; the warp and the
normalisation run on the training device (:mod:`incdet.train.regions.crops`), so a GPU is not
bound by CPU warping, and nothing but a few batches of images is ever held in memory.

The split's annotations are packed into a few flat numpy arrays rather than one Python object per
image: DataLoader workers are forked, and touching millions of small objects (reference counts)
would copy them into every worker, so memory would grow with the dataset after all.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from incdet.boxes import encode_deltas
from incdet.data.records import Annotation
from incdet.errors import InputError
from incdet.io import read_image
from incdet.proposals.store import ProposalStore, fit_stored
from incdet.regions.warp import warp_source
from incdet.regions.labels import BACKGROUND, label_proposals
from incdet.regions.sampling import sample_regions, validation_regions
from incdet.transforms import image_to_uint8_tensor


class PackedAnnotations:
    """Image keys (paths relative to ``image_dir``, the proposal store's keys), sizes and
    ground truth of a split, in flat arrays; boxes float32 (G, 4) xyxy pixels, labels 1-based."""

    def __init__(self, image_dir: Path, annotations: Sequence[Annotation], classes: Sequence[str]) -> None:
        index = {name: i + 1 for i, name in enumerate(classes)}
        keys = [a.filename.encode() for a in annotations]
        self.image_dir = image_dir
        self._names = np.frombuffer(b"".join(keys), np.uint8) if keys else np.zeros(0, np.uint8)
        self._name_ends = np.cumsum([0] + [len(k) for k in keys], dtype=np.int64)
        self.sizes = np.array([(a.width, a.height) for a in annotations], np.int64).reshape(-1, 2)
        self._box_ends = np.cumsum([0] + [len(a.boxes) for a in annotations], dtype=np.int64)
        self._boxes = np.concatenate([a.boxes for a in annotations] or [np.zeros((0, 4), np.float32)]).astype(np.float32)
        self._labels = np.array([index[name] for a in annotations for name in a.labels], np.int64)

    def __len__(self) -> int:
        return len(self.sizes)

    def key(self, i: int) -> str:
        return self._names[self._name_ends[i] : self._name_ends[i + 1]].tobytes().decode()

    def path(self, i: int) -> Path:
        return self.image_dir / self.key(i)

    def ground_truth(self, i: int) -> tuple[Tensor, Tensor]:
        lo, hi = self._box_ends[i], self._box_ends[i + 1]
        return torch.from_numpy(self._boxes[lo:hi]), torch.from_numpy(self._labels[lo:hi])


class RegionSample(NamedTuple):
    """One image's sampled regions: ``boxes`` (K, 4) xyxy pixels of ``image`` ((3, H, W) uint8),
    ``labels`` (K,), and for box regression ``targets`` (K, 4) (``encode_deltas`` towards the
    matched ground truth) with ``regress`` (K,) saying which regions have one."""

    index: int
    image: Tensor
    boxes: Tensor
    labels: Tensor
    targets: Tensor
    regress: Tensor


class SkippedImage(NamedTuple):
    """An image that could not be used this time, with the one-line reason."""

    index: int
    message: str


class RegionBatch(NamedTuple):
    """Several images' regions. ``images`` (R, 3, H, W) uint8 zero-padded right and bottom, ``sizes``
    (R, 2) the (height, width) of each before padding, ``rois`` (N, 5) rows of (image, x1, y1, x2,
    y2), ``labels``/``targets``/``regress`` per region, ``indices`` (R,) the images' dataset indices,
    ``skipped`` the messages of the batch's images that could not be used; ``crops`` the warped
    regions (and ``targets`` mirrored with them) once :func:`incdet.train.regions.crops.prepare_crops`
    has run, else None."""

    images: Tensor
    sizes: Tensor
    rois: Tensor
    labels: Tensor
    targets: Tensor
    regress: Tensor
    indices: Tensor
    skipped: tuple[str, ...]
    crops: Tensor | None = None


class RegionDataset(Dataset):
    """The labelled, sampled regions of each image of a split (see the module docstring).

    Training draws up to ``regions_per_image`` regions afresh every time (``fg_fraction`` foreground
    when there are enough); with ``validation_seed`` every call for an image returns the same regions
    (all foreground plus a seeded background sample in the training ratio), so validation accuracy
    is comparable across epochs. Regions are foreground at IoU >= ``fg_iou``; foreground regions at
    IoU >= ``bbox_iou`` get regression targets. With ``crop`` (the warp's input size and context pad),
    an image far larger than its regions need is reduced first, exactly as the detector
    reduces it (:func:`incdet.regions.warp.warp_source`).
    """

    def __init__(self, annotations: PackedAnnotations, store: ProposalStore, *, fg_iou: float, bbox_iou: float,
                 regions_per_image: int, fg_fraction: float, validation_seed: int | None = None,
                 crop: tuple[int, int] | None = None) -> None:
        self.annotations, self.store, self.crop = annotations, store, crop
        self.fg_iou, self.bbox_iou = fg_iou, bbox_iou
        self.regions_per_image, self.fg_fraction = regions_per_image, fg_fraction
        self.validation_seed = validation_seed

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> RegionSample | SkippedImage:
        key, path = self.annotations.key(index), self.annotations.path(index)
        try:
            entry = self.store.entry(key)
            if entry is None:
                raise InputError(self.store.path, f"has no proposals for {key!r}")
            image = read_image(path)
            height, width = image.shape[:2]
            ann_width, ann_height = self.annotations.sizes[index]
            if (ann_width, ann_height) not in ((width, height), (0, 0)):
                raise InputError(path, f"is {width}x{height} but its annotation says {ann_width}x{ann_height}")
            # As detection fits them (incdet.engine.steps.Loader); the repairs' warnings are the detector's to report.
            proposals, _ = fit_stored(entry.proposals, width, height, path, str(self.store.path), (entry.width, entry.height))
        except InputError as exc:  # one bad image or store entry must not stop an epoch
            return SkippedImage(index, str(exc))
        gt_boxes, gt_labels = self.annotations.ground_truth(index)
        regions = torch.cat([proposals.boxes, gt_boxes])
        match = label_proposals(regions, gt_boxes, gt_labels, self.fg_iou)
        if self.validation_seed is None:
            chosen = sample_regions(match.labels, self.regions_per_image, self.fg_fraction)
        else:
            chosen = validation_regions(match.labels, self.regions_per_image, self.fg_fraction, self.validation_seed * 1_000_003 + index)
        labels, iou = match.labels[chosen], match.iou[chosen]
        regress = (labels != BACKGROUND) & (iou >= self.bbox_iou)
        targets = torch.zeros(len(chosen), 4)
        if regress.any():
            targets[regress] = encode_deltas(regions[chosen][regress], gt_boxes[match.gt_index[chosen][regress]])
        boxes = regions[chosen]
        if self.crop is not None:
            # A huge image none of whose regions needs its full resolution: reduced, as detection reduces it.
            # Decided on all its regions, as detection decides on all its proposals, so both reduce the same
            # images; the targets are relative to each box, so they stay.
            source = warp_source(image, regions, [self.crop])
            image, boxes = source.image, source.boxes[chosen]
        return RegionSample(index, image_to_uint8_tensor(image), boxes, labels, targets, regress)


def collate_regions(items: list[RegionSample | SkippedImage]) -> RegionBatch:
    """Pad the images to a common size and stack the regions; skipped images only leave their message."""
    samples = [s for s in items if isinstance(s, RegionSample)]
    skipped = tuple(s.message for s in items if isinstance(s, SkippedImage))
    height = max((s.image.shape[1] for s in samples), default=0)
    width = max((s.image.shape[2] for s in samples), default=0)
    images = torch.zeros(len(samples), 3, height, width, dtype=torch.uint8)
    for i, s in enumerate(samples):
        images[i, :, : s.image.shape[1], : s.image.shape[2]] = s.image
    batch_index = [torch.full((len(s.boxes), 1), float(i)) for i, s in enumerate(samples)]
    return RegionBatch(
        images=images,
        sizes=torch.tensor([tuple(s.image.shape[1:]) for s in samples], dtype=torch.long).reshape(-1, 2),
        rois=torch.cat([torch.cat([b, s.boxes], dim=1) for b, s in zip(batch_index, samples)] or [torch.zeros(0, 5)]),
        labels=torch.cat([s.labels for s in samples] or [torch.zeros(0, dtype=torch.long)]),
        targets=torch.cat([s.targets for s in samples] or [torch.zeros(0, 4)]),
        regress=torch.cat([s.regress for s in samples] or [torch.zeros(0, dtype=torch.bool)]),
        indices=torch.tensor([s.index for s in samples], dtype=torch.long),
        skipped=skipped,
    )
