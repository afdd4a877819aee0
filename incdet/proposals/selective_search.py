"""Selective-search region proposals as R-CNN ran them ("fast mode"), with GoogLeNet's larger superpixels.

R-CNN's ``selective_search_boxes.m`` resizes the image to 500 px wide, runs Felzenszwalb
segmentation with k in {50, 100} (min size k, sigma 0.8) on its HSV and Lab versions, groups each
segmentation hierarchically with two strategies, pools the boxes, orders them pseudo-randomly
(hierarchy position x uniform random, so the first N are a fair sample of every level), drops
boxes under 20 px and removes duplicates. GoogLeNet doubled the superpixels (k x 2).

Two backends produce the boxes and their hierarchy positions; this module does the rest, the same
for both:

- ``"opencv"`` (default): OpenCV-contrib's ``cv2.ximgproc.segmentation``, R-CNN's recipe with both
  strategies and pixel adjacency (``incdet/proposals/ss_opencv.py``).
- ``"selectivesearch"``: the pure-Python ``selectivesearch`` package, about 4x slower, with a weak
  colour similarity (``incdet/proposals/ss_python.py``); kept to reproduce earlier results.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from incdet.errors import InputError
from incdet.proposals.settings import BACKENDS, SearchSettings
from incdet.structures import Proposals

_MODULES = {"opencv": "incdet.proposals.ss_opencv", "selectivesearch": "incdet.proposals.ss_python"}
BASE_KS = (50, 100)  # R-CNN fast mode; GoogLeNet doubled the superpixel size (superpixel_scale=2)
SIGMA = 0.8
# The search time grows faster than the pixel count (OpenCV's colour histograms take one pass over
# the image per segment): on one core about 0.4 s at 500x333, 6-10 s at 1 megapixel, 40 s at 4
# (OpenCV backend; the other is slower), more still at 6000x4000 (24 megapixels), and over a gigabyte of memory.
MAX_SEARCH_PIXELS = 4_000_000

log = logging.getLogger(__name__)


def _search_image(image: np.ndarray, search_width: int) -> np.ndarray:
    """The image the search runs on: resized to ``search_width`` if wider (0: as it is)."""
    height, width = image.shape[:2]
    small = image
    if search_width and width > search_width:
        # R-CNN searches 500 px wide images: segmentation scale k is in pixels, so the image
        # size fixes what k means, and the search time grows with the pixel count.
        small_height = max(1, round(height * search_width / width))
        small = cv2.resize(image, (search_width, small_height), interpolation=cv2.INTER_AREA)
    if small.shape[0] * small.shape[1] > MAX_SEARCH_PIXELS:
        raise ValueError(
            f"a {small.shape[1]}x{small.shape[0]} px search image is over selective search's limit of "
            f"{MAX_SEARCH_PIXELS:,} pixels; search it resized with search_width (R-CNN: 500)"
        )
    return np.ascontiguousarray(small)


def selective_search(
    image: np.ndarray,
    superpixel_scale: float = 2.0,
    *,
    backend: str = "opencv",
    min_size: int = 20,
    search_width: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """Proposals for one HxWx3 RGB uint8 image as float32 (N, 4) continuous xyxy pixel boxes.

    Boxes are in ``image``'s frame with x2/y2 exclusive (a box of the whole image is
    ``[0, 0, W, H]``), clipped to it, at least ``min_size`` wide and high, without duplicates (an
    image narrower or lower than ``min_size`` gets none). ``superpixel_scale`` multiplies R-CNN's
    Felzenszwalb k (and min component size): 1 is R-CNN's {50, 100}, 2 GoogLeNet's doubled
    superpixels {100, 200} with about half the boxes. Images wider than ``search_width`` are
    searched resized to it and the boxes scaled back; 0 searches at full resolution.

    Order, as R-CNN's: every box's hierarchy position (1 = the top of its hierarchy; the initial
    segments last) times a uniform random number seeded by ``seed``, ascending; a box found in
    several hierarchies keeps its first place. So the first N boxes are a fair subsample.
    Raises ValueError for a bad argument or a search image over MAX_SEARCH_PIXELS.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    if superpixel_scale <= 0:
        raise ValueError(f"superpixel_scale must be positive, got {superpixel_scale}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if search_width < 0 or min_size < 0:
        raise ValueError(f"search_width and min_size must be >= 0, got {search_width} and {min_size}")
    height, width = image.shape[:2]
    if min(height, width) < min_size:
        return np.zeros((0, 4), np.float32)
    small = _search_image(image, search_width)
    ks = [max(1, round(k * superpixel_scale)) for k in BASE_KS]
    boxes_np, priority = importlib.import_module(_MODULES[backend]).hierarchies(small, ks, SIGMA)

    boxes_np *= np.array([width / small.shape[1], height / small.shape[0]] * 2, np.float32)
    order = np.argsort(priority * np.random.default_rng(seed).random(len(priority)), kind="stable")
    tensor = clip_boxes_to_image(torch.from_numpy(boxes_np[order]), (height, width))
    tensor = tensor[remove_small_boxes(tensor, float(min_size))]
    kept = tensor.numpy()
    # Keep the first (best-ranked) copy of each box, in ranked order.
    _, first = np.unique(kept, axis=0, return_index=True)
    result = np.ascontiguousarray(kept[np.sort(first)], dtype=np.float32)
    log.debug("%s selective search on %dx%d px: %d boxes, %d kept", backend, small.shape[1], small.shape[0], len(boxes_np), len(result))
    return result


def search_proposals(image: np.ndarray, settings: SearchSettings, path: str | Path | None = None) -> Proposals:
    """Selective-search proposals of one RGB uint8 image; InputError (naming ``path``) for an image
    smaller than the minimum region size, which can hold no proposal."""
    height, width = image.shape[:2]
    if min(height, width) < settings.min_size:
        raise InputError(path, f"image is {width}x{height} px, smaller than the {settings.min_size} px minimum region size")
    boxes = selective_search(image, settings.superpixel_scale, backend=settings.backend, min_size=settings.min_size,
                             search_width=settings.search_width, seed=settings.seed)
    return Proposals.from_boxes(boxes)
