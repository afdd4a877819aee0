"""Selective-search region proposals approximating R-CNN's "fast mode" with GoogLeNet's larger superpixels.

R-CNN's fast mode runs Felzenszwalb segmentation with k in {50, 100} in two colour spaces (HSV and
Lab), groups each hierarchically, and pools the boxes. The ``selectivesearch`` package does one
segmentation and one grouping per call, so we call it once per (colour space, k). Its colour
similarity is constant (its HSV histogram puts all mass in one bin), which leaves its grouping close
to R-CNN's second strategy (texture + size + fill); its second strategy would add nothing, so the
colour spaces are what still differ between calls: the segmentation runs on the converted image, as
in the original code.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import selectivesearch
import torch
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

BASE_KS = (50, 100)  # R-CNN fast mode; GoogLeNet doubled the superpixel size (superpixel_scale=2)
SIGMA = 0.8
COLOUR_SPACES = {"hsv": cv2.COLOR_RGB2HSV_FULL, "lab": cv2.COLOR_RGB2LAB}


def _search_once(image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One segmentation + grouping: continuous xyxy boxes and each box's hierarchy position.

    The package lists initial segments first and merged regions in merge order, so the last box
    is the top of the hierarchy; position 1 is that top, as in Uijlings et al.'s ranking.
    """
    with warnings.catch_warnings():
        # The package feeds float channels to local_binary_pattern; the warning is about that.
        warnings.filterwarnings("ignore", message=".*local_binary_pattern.*", category=UserWarning)
        _, regions = selectivesearch.selective_search(image, scale=k, sigma=SIGMA, min_size=k)
    # rect is (x, y, w, h) with x + w the LAST pixel column, so the exclusive edge is x + w + 1.
    rects = np.array([r["rect"] for r in regions], np.float32).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] + 1], axis=1)
    position = np.arange(len(boxes), 0, -1, dtype=np.float64)
    return boxes, position


def selective_search(
    image: np.ndarray,
    superpixel_scale: float = 2.0,
    *,
    min_size: int = 20,
    search_width: int = 500,
    seed: int = 0,
    backend: str = "selectivesearch",
) -> np.ndarray:
    """Proposals for one HxWx3 RGB uint8 image as float32 (N, 4) continuous xyxy boxes.

    ``superpixel_scale`` multiplies R-CNN's Felzenszwalb k (and min component size): 1 is R-CNN's
    {50, 100}, 2 is GoogLeNet's doubled superpixels {100, 200} with about half the boxes.
    Boxes come back in R-CNN's pseudo-random order (hierarchy position x uniform random, seeded),
    so the first N are a fair subsample from every level rather than only tiny or only huge regions.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    if backend != "selectivesearch":
        raise ValueError(f"unknown selective-search backend {backend!r}")
    if superpixel_scale <= 0:
        raise ValueError(f"superpixel_scale must be positive, got {superpixel_scale}")
    height, width = image.shape[:2]
    small = image
    if width > search_width:
        # R-CNN searches 500 px wide images: segmentation scale k is in pixels, so the image
        # size fixes what k means, and the search time grows with the pixel count.
        small_height = max(1, round(height * search_width / width))
        small = cv2.resize(image, (search_width, small_height), interpolation=cv2.INTER_AREA)
    ks = [max(1, round(k * superpixel_scale)) for k in BASE_KS]

    boxes, positions = [], []
    for code in COLOUR_SPACES.values():
        converted = cv2.cvtColor(small, code)
        for k in ks:
            b, p = _search_once(converted, k)
            boxes.append(b)
            positions.append(p)
    boxes_np = np.concatenate(boxes)
    positions_np = np.concatenate(positions)

    boxes_np *= np.array([width / small.shape[1], height / small.shape[0]] * 2, np.float32)
    order = np.argsort(positions_np * np.random.default_rng(seed).random(len(positions_np)), kind="stable")
    tensor = clip_boxes_to_image(torch.from_numpy(boxes_np[order]), (height, width))
    tensor = tensor[remove_small_boxes(tensor, float(min_size))]
    kept = tensor.numpy()
    # Keep the first (best-ranked) copy of each box, in ranked order.
    _, first = np.unique(kept, axis=0, return_index=True)
    return np.ascontiguousarray(kept[np.sort(first)], dtype=np.float32)
