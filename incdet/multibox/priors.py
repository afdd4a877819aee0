"""MultiBox priors: k-means centroids of the training ground-truth boxes in normalised coordinates.

Erhan et al. cluster the training boxes so that each of the K outputs specialises in one typical
place and shape; the network then regresses a small offset from its prior instead of a box from
nothing, and matching a ground truth to the prior nearest it stays stable during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.cluster.vq import kmeans2


def normalise_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel xyxy boxes -> xyxy as fractions of the image width and height (what the network predicts)."""
    scale = np.array([width, height, width, height], np.float32)
    return np.asarray(boxes, np.float32).reshape(-1, 4) / scale


def mirror_boxes(boxes: np.ndarray) -> np.ndarray:
    """Normalised boxes of the horizontally flipped image (the flip augmentation)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)


def cluster_priors(boxes: Sequence[np.ndarray] | np.ndarray, num_priors: int, seed: int = 0) -> np.ndarray:
    """``num_priors`` k-means centroids (float32 (K, 4) normalised xyxy) of the given normalised boxes.

    Euclidean k-means on the four corner coordinates, as the MultiBox paper clusters them; a
    centroid is a mean of valid boxes, so it is a valid box too. Centroids are sorted (by y1, x1,
    y2, x2) so the same boxes give the same prior order whatever the k-means initialisation.
    """
    data = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]) if len(boxes) else np.zeros((0, 4))
    if num_priors < 1:
        raise ValueError(f"num_priors must be at least 1, got {num_priors}")
    distinct = len(np.unique(data, axis=0))
    if distinct < num_priors:
        raise ValueError(f"cannot cluster {distinct} distinct training boxes into {num_priors} priors; use fewer priors")
    if not ((data[:, 2:] > data[:, :2]).all() and (data >= 0).all() and (data <= 1).all()):
        raise ValueError("training boxes must be normalised xyxy inside [0, 1] with x2 > x1 and y2 > y1")
    # k-means++ seeding picks spread-out boxes first, so rare placements still get a prior.
    centroids, _ = kmeans2(data, num_priors, minit="++", seed=np.random.default_rng(seed))
    order = np.lexsort((centroids[:, 2], centroids[:, 3], centroids[:, 0], centroids[:, 1]))
    return np.ascontiguousarray(centroids[order], dtype=np.float32)
