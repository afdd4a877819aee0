"""The context-padded region warp against an independent crop-and-resize, and its bounded cost on huge
regions. Textured images, so a crop from the wrong place, box or image cannot pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import incdet.regions.warp as warp
from incdet.regions.warp import warp_image_regions, warp_regions
from incdet.transforms import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor


def _photo(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    """Smooth random texture: blurred noise, so bilinear and area sampling agree closely."""
    noise = np.random.default_rng(seed).integers(0, 255, (height // 8, width // 8, 3)).astype(np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def _reference_crop(image: np.ndarray, box, size: int, pad: int) -> np.ndarray:
    """R-CNN's warp written independently: dilate the box so ``pad`` px of context surround it at
    ``size`` px, cut it out (mean colour outside the image), resize anisotropically, normalise."""
    x1, y1, x2, y2 = box
    scale = size / (size - 2 * pad)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
    left, top, right, bottom = (int(round(v)) for v in (cx - hw, cy - hh, cx + hw, cy + hh))
    canvas = np.empty((bottom - top, right - left, 3), np.float32)
    canvas[:] = np.array(IMAGENET_MEAN, np.float32) * 255
    height, width = image.shape[:2]
    sx1, sy1, sx2, sy2 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    canvas[sy1 - top:sy2 - top, sx1 - left:sx2 - left] = image[sy1:sy2, sx1:sx2]
    crop = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA) / 255.0
    return ((crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1).astype(np.float32)


BOXES = np.array([[20, 10, 100, 90], [0, 30, 60, 118], [90, 5, 159, 50], [-10, -10, 40, 40]], np.float32)


def test_warp_matches_an_independent_crop_and_resize_and_only_the_right_box() -> None:
    image = _photo(0)
    crops = warp_image_regions(image_to_tensor(image), torch.from_numpy(BOXES), 32, 4).numpy()
    for i, box in enumerate(BOXES):
        reference = _reference_crop(image, box, 32, 4)
        own = np.abs(crops[i] - reference).mean()
        assert own < 0.15, f"box {i}: mean difference {own:.3f}"  # measured 0.025-0.116 (0.116: box at the edge)
        for j, other in enumerate(BOXES):  # every other box's crop is far from this one
            if j != i:
                assert np.abs(crops[j] - reference).mean() > 2 * own


def test_each_region_is_warped_from_its_own_image_of_the_batch() -> None:
    images = [_photo(1), _photo(2)]
    batch = torch.stack([image_to_tensor(im) for im in images])
    rois = torch.tensor([[0, 20, 10, 100, 90], [1, 20, 10, 100, 90], [1, 0, 30, 60, 118]], dtype=torch.float32)
    crops = warp_regions(batch, rois, 32, 4).numpy()
    for crop, (index, *box) in zip(crops, rois.tolist()):
        right = np.abs(crop - _reference_crop(images[int(index)], box, 32, 4)).mean()
        wrong = np.abs(crop - _reference_crop(images[1 - int(index)], box, 32, 4)).mean()
        assert right < 0.12 and wrong > 3 * right


def test_context_pad_is_what_surrounds_the_box() -> None:
    image = _photo(3)
    box = torch.tensor([[40.0, 30, 120, 90]])
    padded = warp_image_regions(image_to_tensor(image), box, 32, 4).numpy()[0]
    bare = warp_image_regions(image_to_tensor(image), box, 24, 0).numpy()[0]
    # The central 24x24 of the padded crop is the box itself, as the unpadded 24 px warp shows it.
    assert np.abs(padded[:, 4:28, 4:28] - bare).mean() < 0.05


def test_huge_regions_are_warped_from_a_pooled_level_at_bounded_cost(monkeypatch) -> None:
    image = torch.from_numpy(_photo(4, 2400, 3200)).permute(2, 0, 1).float().div(255)
    boxes = torch.tensor([[0.0, 0, 3100, 2300], [100, 200, 2100, 1800], [10, 10, 300, 300], [10, 10, 60, 40]])
    levels = warp._pyramid_levels(boxes, 32)
    assert levels.tolist() == [6, 5, 3, 0]  # a side above 2 x 32 px leaves level 0
    pooled = warp_image_regions(image, boxes, 32, 0)
    monkeypatch.setattr(warp, "MAX_SAMPLES", 10**6)  # every region from the full-resolution image
    full = warp_image_regions(image, boxes, 32, 0)
    assert (pooled - full).abs().mean() < 0.03  # measured 0.020 of the [0, 1] pixel range (0.003 with MAX_SAMPLES 8)
    assert torch.allclose(pooled, full, atol=0.25)  # measured at most 0.19, on the 300 px region


@pytest.mark.parametrize("size", [64, 224])
def test_regions_up_to_twice_the_crop_size_stay_on_the_full_resolution_image(size: int) -> None:
    boxes = torch.tensor([[0, 0, 2 * size, 10], [0, 0, 2 * size + 1, 10], [0, 0, 8 * size, 10]], dtype=torch.float32)
    assert warp._pyramid_levels(boxes, size).tolist() == [0, 1, 2]


def test_a_photo_far_larger_than_its_regions_need_is_reduced_before_warping() -> None:
    photo = _photo(5, 1800, 2400)
    boxes = torch.tensor([[100.0, 100, 700, 500], [900, 200, 2300, 1700], [0, 0, 2400, 1800]])
    source = warp.warp_source(photo, boxes, [(32, 4), (24, 2)])
    assert source.image.shape == (113, 150, 3)  # level 4: the smallest region, 800 px with its context, > 2^3 x 2 x 32 px
    assert torch.allclose(source.boxes * source.scale, boxes)
    reduced = warp_image_regions(image_to_tensor(source.image), source.boxes, 32, 4)
    full = warp_image_regions(image_to_tensor(photo), boxes, 32, 4)
    assert (reduced - full).abs().mean() < 0.03  # the crops the full image gives: measured 0.020 (8-bit rounding)
    small = warp.warp_source(photo, torch.tensor([[0.0, 0, 40, 40], *boxes.tolist()]), [(32, 4)])
    assert small.image is photo and torch.equal(small.scale, torch.ones(4))  # a small region needs every pixel


def test_boxes_regressed_on_a_reduced_photo_come_back_in_its_own_pixels(tmp_path) -> None:
    from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
    from incdet.pipeline import Pipeline
    from incdet.structures import Proposals

    spec = RegionClassifierSpec(arch="googlenet", classes=("a", "b"), input_size=32, context_pad=2, width=0.125, bbox_reg=True)
    torch.manual_seed(0)
    save_region_classifier(tmp_path / "m.pt", spec, spec.build().eval())
    photo = _photo(6, 1800, 2400)
    boxes = torch.tensor([[100.0, 100, 700, 500], [900, 200, 2300, 1700], [300, 400, 1500, 1600]])
    pipeline = Pipeline([tmp_path / "m.pt"], multibox=None, device="cpu")
    assert warp.warp_source(photo, boxes, [(32, 2)]).image.shape[0] < 1800  # this photo is reduced
    scores = pipeline.classify([photo], [Proposals.from_boxes(boxes)])[0]
    moved = scores.boxes[:, 1:].reshape(-1, 4)
    assert torch.allclose(moved, boxes.repeat_interleave(2, 0), rtol=0.2)  # near their proposals, not 4x smaller
