"""Selective search on the pure-Python ``selectivesearch`` package (the backend incdet started with).

The package does one segmentation and one grouping per call, so R-CNN's fast mode is one call per
(colour space, k). Its colour similarity is constant (its HSV histogram puts all mass in one bin),
which leaves its grouping close to R-CNN's second strategy (texture + size + fill); its second
strategy would add nothing, so the colour spaces are what still differ between calls: the
segmentation runs on the converted image, as in the original code. Its neighbours come from a
bounding-box test, not pixel adjacency, and it is about 4 s per 500 px image: kept to reproduce
earlier results, not as the default.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import selectivesearch

COLOUR_SPACES = (cv2.COLOR_RGB2HSV_FULL, cv2.COLOR_RGB2LAB)


def _search_once(image: np.ndarray, k: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """One segmentation + grouping: continuous xyxy boxes and each box's hierarchy position.

    The package lists initial segments first and merged regions in merge order, so the last box
    is the top of the hierarchy; position 1 is that top, as in Uijlings et al.'s ranking.
    """
    with warnings.catch_warnings():
        # The package feeds float channels to local_binary_pattern; the warning is about that.
        warnings.filterwarnings("ignore", message=".*local_binary_pattern.*", category=UserWarning)
        _, regions = selectivesearch.selective_search(image, scale=k, sigma=sigma, min_size=k)
    # rect is (x, y, w, h) with x + w the LAST pixel column, so the exclusive edge is x + w + 1.
    rects = np.array([r["rect"] for r in regions], np.float32).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] + 1], axis=1)
    position = np.arange(len(boxes), 0, -1, dtype=np.float64)
    return boxes, position


def hierarchies(image: np.ndarray, ks: Sequence[int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """All boxes for an HxWx3 RGB uint8 image: float32 (N, 4) continuous xyxy in its pixels (x2/y2
    exclusive) and each box's hierarchy position, concatenated by colour space, then k."""
    boxes, positions = [], []
    for code in COLOUR_SPACES:
        converted = cv2.cvtColor(image, code)
        for k in ks:
            b, p = _search_once(converted, k, sigma)
            boxes.append(b)
            positions.append(p)
    return np.concatenate(boxes), np.concatenate(positions)
