"""Test-time crops of the GoogLeNet paper (section 7, table 3): 1, 10 or 144 crops per image.

Every geometry is stated for the paper's 224 px crop and scaled with the model's input
size, so a 32 px model sees the same relative crops:

* 1 crop: shorter side resized to ``size / 0.875`` (256 for 224), the centre square cut out.
* 10 crops (Krizhevsky et al.): shorter side 256; the 4 corner and the centre 224 windows of
  the whole resized image, and their mirror images.
* 144 crops: shorter side 256, 288, 320 and 352; the left, centre and right squares (top,
  centre, bottom for portrait images); in each square the 4 corner and the centre 224
  windows plus the whole square resized to 224; all mirrored too: 4 x 3 x 6 x 2 = 144.

Crops are cut from the image resized once per scale, as the paper describes. The "whole
square" crop covers the same part of the image at all four scales (it differs only by the
intermediate resize), and on a square image the three squares coincide: such images give
144 crops but fewer distinct views. torchvision has ``ten_crop`` but nothing for the 144-crop
scheme, hence this module; crops are plain tensor slices of the resized image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

PAPER_CROP = 224
CENTER_CROP_FRACTION = 0.875  # 224 of 256: the single-crop evaluation of both papers
TEN_CROP_SIDE = 256
MULTI_SCALE_SIDES = (256, 288, 320, 352)
CROP_COUNTS = (1, 10, 144)
WINDOWS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")


@dataclass(frozen=True)
class Crop:
    """One crop: a box in the image resized so that its shorter side is ``side``.

    ``box`` is (x1, y1, x2, y2) in integer pixels of that resized image, x2/y2 exclusive;
    ``window`` is one of WINDOWS or "square" (the whole square, resized to the crop size);
    ``square`` is 0/1/2 for the first/centre/last square of the 144 scheme, None otherwise.
    """

    side: int
    box: tuple[int, int, int, int]
    window: str
    mirrored: bool
    square: int | None = None


def scaled_side(paper_side: int, size: int) -> int:
    """A shorter-side length stated for 224 px crops, scaled to ``size`` px crops."""
    return round(paper_side * size / PAPER_CROP)


def resized_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to ``side``, keeping the aspect ratio
    (the longer side truncated, as torchvision's ``resize(image, side)`` does)."""
    if height <= width:
        return side, max(side, int(side * width / height))
    return max(side, int(side * height / width)), side


def _windows(x0: int, y0: int, w: int, h: int, size: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The 4 corner and the centre ``size`` windows of the w x h area at (x0, y0), torchvision's five_crop placement."""
    cx, cy = x0 + int(round((w - size) / 2.0)), y0 + int(round((h - size) / 2.0))
    corners = [(x0, y0), (x0 + w - size, y0), (x0, y0 + h - size), (x0 + w - size, y0 + h - size), (cx, cy)]
    return [(name, (x, y, x + size, y + size)) for name, (x, y) in zip(WINDOWS, corners)]


def crop_plan(num_crops: int, height: int, width: int, size: int) -> list[Crop]:
    """The crops of the 1-, 10- or 144-crop scheme for a ``height`` x ``width`` image and ``size`` px crops."""
    if num_crops == 1:
        side = max(size, round(size / CENTER_CROP_FRACTION))
        h, w = resized_shape(height, width, side)
        return [Crop(side, _windows(0, 0, w, h, size)[-1][1], "center", False)]
    if num_crops == 10:
        side = scaled_side(TEN_CROP_SIDE, size)
        h, w = resized_shape(height, width, side)
        return [Crop(side, box, name, mirrored) for mirrored in (False, True) for name, box in _windows(0, 0, w, h, size)]
    if num_crops == 144:
        plan = []
        for side in (scaled_side(s, size) for s in MULTI_SCALE_SIDES):
            h, w = resized_shape(height, width, side)
            extra = max(h, w) - side
            for square, offset in enumerate((0, int(round(extra / 2.0)), extra)):
                x0, y0 = (offset, 0) if w >= h else (0, offset)
                views = [*_windows(x0, y0, side, side, size), ("square", (x0, y0, x0 + side, y0 + side))]
                plan += [Crop(side, box, name, mirrored, square) for mirrored in (False, True) for name, box in views]
        return plan
    raise ValueError(f"num_crops must be one of {CROP_COUNTS}, got {num_crops}")


def extract_crops(image: Tensor, plan: list[Crop], size: int) -> Tensor:
    """(N, 3, size, size) crops of a (3, H, W) image, same dtype; one antialiased resize per scale."""
    resized: dict[int, Tensor] = {}
    crops = []
    for crop in plan:
        if crop.side not in resized:
            h, w = resized_shape(image.shape[-2], image.shape[-1], crop.side)
            resized[crop.side] = TF.resize(image, [h, w], antialias=True)
        x1, y1, x2, y2 = crop.box
        view = resized[crop.side][..., y1:y2, x1:x2]
        if view.shape[-1] != size or view.shape[-2] != size:
            view = TF.resize(view, [size, size], antialias=True)
        crops.append(view.flip(-1) if crop.mirrored else view)
    return torch.stack(crops)
