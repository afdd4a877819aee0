"""Selective search on OpenCV-contrib's ``cv2.ximgproc.segmentation``: R-CNN's fast mode in C++.

The recipe is R-CNN's ``selective_search_boxes.m`` in fast mode: HSV and Lab images, a
Felzenszwalb segmentation of each with ``createGraphSegmentation(sigma, k, min_size=k)`` for every
k, and two hierarchical groupings of each segmentation, one per strategy
(``createSelectiveSearchSegmentationStrategyMultiple`` of colour + texture + size + fill, and of
texture + size + fill; equal weights, so the most similar pair is the one the paper's sum picks).

Why we do not call ``SelectiveSearchSegmentation.process()``: it groups exactly like this, but it
returns only the deduplicated boxes, ranked by ``rand() / RAND_MAX * level`` with C's ``rand()``
(which ``cv2.setRNGSeed`` does not seed: the order changes from call to call and with anything else
that calls ``rand()``) and ``level`` the height in the merge tree (initial segments first: the
inverse of Uijlings' ranking). The merge
order that Uijlings' ranking needs never leaves it. So this module runs OpenCV's own segmentation
and similarity strategies and drives OpenCV's greedy merge loop (``hierarchicalGrouping`` in
``selectivesearchsegmentation.cpp``) itself: the boxes are ``process()``'s (the tests check it
against the explicit ``addImage`` / ``addGraphSegmentation`` / ``addStrategy`` / ``process`` recipe)
and each comes with its position in the merge order.

Nothing here starts threads beyond OpenCV's own pool (``cv2.setNumThreads`` decides; the proposal
workers set it to 1).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import cv2
import numpy as np
from scipy.ndimage import find_objects

# 8-bit HSV_FULL puts hue on 0-255 like MATLAB's im2uint8(rgb2hsv(im)); plain HSV would use only
# 18 of the 25 colour-histogram bins for hue (0-179).
COLOUR_SPACES = (cv2.COLOR_RGB2HSV_FULL, cv2.COLOR_RGB2Lab)

_segmentation = cv2.ximgproc.segmentation


def _strategies() -> list[cv2.ximgproc.segmentation.SelectiveSearchSegmentationStrategy]:
    """R-CNN's fast-mode strategies: colour+texture+size+fill, then texture+size+fill (fresh objects:
    they hold per-region histograms)."""
    seg = _segmentation
    return [
        seg.createSelectiveSearchSegmentationStrategyMultiple(
            seg.createSelectiveSearchSegmentationStrategyColor(),
            seg.createSelectiveSearchSegmentationStrategyTexture(),
            seg.createSelectiveSearchSegmentationStrategySize(),
            seg.createSelectiveSearchSegmentationStrategyFill(),
        ),
        seg.createSelectiveSearchSegmentationStrategyMultiple(
            seg.createSelectiveSearchSegmentationStrategyTexture(),
            seg.createSelectiveSearchSegmentationStrategySize(),
            seg.createSelectiveSearchSegmentationStrategyFill(),
        ),
    ]


def _leaf_boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """(count, 4) int64 xyxy boxes (x2/y2 exclusive, like ``cv::boundingRect``) of labels 0..count-1."""
    slices = find_objects(labels + 1, max_label=count)
    return np.array([(sx.start, sy.start, sx.stop, sy.stop) for sy, sx in slices], np.int64).reshape(-1, 4)


def _adjacent_pairs(labels: np.ndarray, count: int) -> np.ndarray:
    """Unique (a, b), a < b, of adjacent segments, by OpenCV's rule: each pixel (i, j) with i, j >= 1
    touches its left, upper and upper-left pixels (so row 0 and column 0 add no pairs of their own)."""
    here = labels[1:, 1:].ravel().astype(np.int64)
    pairs = []
    for other in (labels[1:, :-1], labels[:-1, 1:], labels[:-1, :-1]):
        other = other.ravel().astype(np.int64)
        differ = here != other
        a, b = here[differ], other[differ]
        pairs.append(np.minimum(a, b) * count + np.maximum(a, b))
    codes = np.unique(np.concatenate(pairs))
    return np.stack([codes // count, codes % count], axis=1)


def merge_sequence(
    image: np.ndarray,
    labels: np.ndarray,
    leaves: np.ndarray,
    pairs: np.ndarray,
    strategy: cv2.ximgproc.segmentation.SelectiveSearchSegmentationStrategy,
) -> np.ndarray:
    """Boxes (M, 4) int64 xyxy of the regions made by greedily merging the most similar adjacent pair,
    in merge order (the last one is the top of the hierarchy).

    As OpenCV's ``hierarchicalGrouping``: a merged region is scored under the smaller of its parts'
    strategy ids (the strategies keep per-id histograms and boxes), its neighbours are its parts'
    neighbours, and sizes are updated after ``strategy.merge``. Ties in similarity may be broken
    differently from OpenCV's ``std::sort``.
    """
    count = len(leaves)
    sizes = np.bincount(labels.ravel(), minlength=count).astype(np.int32)
    # The strategies keep a view of ``sizes`` (OpenCV's own loop relies on the same sharing), so the
    # size and fill terms see every update made below.
    strategy.setImage(image, labels, sizes)
    ids = list(range(count))  # the strategy id of each region, leaves first, then merges
    alive = [True] * count
    neighbours: list[set[int]] = [set() for _ in range(count)]
    heap = []
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
        heap.append((-strategy.get(a, b), a, b))
    heapq.heapify(heap)
    boxes = [tuple(box) for box in leaves.tolist()]
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        new = len(boxes)
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = boxes[a], boxes[b]
        boxes.append((min(ax1, bx1), min(ay1, by1), max(ax2, bx2), max(ay2, by2)))
        strategy.merge(ids[a], ids[b])
        sizes[ids[a]] += sizes[ids[b]]
        sizes[ids[b]] = sizes[ids[a]]
        ids.append(min(ids[a], ids[b]))
        alive[a] = alive[b] = False
        alive.append(True)
        around = (neighbours[a] | neighbours[b]) - {a, b}
        neighbours.append(around)
        for other in around:
            neighbours[other] -= {a, b}
            neighbours[other].add(new)
            heapq.heappush(heap, (-strategy.get(ids[new], ids[other]), new, other))
    return np.array(boxes[count:], np.int64).reshape(-1, 4)


def hierarchies(image: np.ndarray, ks: Sequence[int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """All boxes of R-CNN's fast mode for an HxWx3 RGB uint8 image, with Uijlings' hierarchy position.

    Returns float32 (N, 4) continuous xyxy boxes in ``image``'s pixels (x2/y2 exclusive) and a float64
    (N,) priority, concatenated in R-CNN's order (k, then colour space). As in Uijlings'
    ``Image2HierarchicalGrouping``: within one segmentation, strategy s's merges get M_s, ..., 1 in
    merge order (1 = the last merge, the top of the hierarchy), and the initial segments, listed once
    for both strategies, get M_1 + 1.
    """
    boxes, priority = [], []
    for k in ks:
        for code in COLOUR_SPACES:
            converted = cv2.cvtColor(image, code)
            labels = _segmentation.createGraphSegmentation(sigma, float(k), int(k)).processImage(converted)
            count = int(labels.max()) + 1
            leaves = _leaf_boxes(labels, count)
            pairs = _adjacent_pairs(labels, count)
            merged = [merge_sequence(converted, labels, leaves, pairs, s) for s in _strategies()]
            for sequence in merged:
                boxes.append(sequence)
                priority.append(np.arange(len(sequence), 0, -1, dtype=np.float64))
            boxes.append(leaves)
            priority.append(np.full(count, len(merged[0]) + 1, dtype=np.float64))
    return np.concatenate(boxes).astype(np.float32), np.concatenate(priority)
