"""The MultiBox training objective: assign ground truths to priors, then location + confidence loss.

Erhan et al. match each ground-truth box to exactly one output (a bipartite assignment, so two
objects never share an output) by the squared distance of their normalised corners; with priors the
match is made against the priors rather than the current predictions, which keeps it stable from
the first step. The loss of an image is

    alpha / 2 * sum over matched (i, j) of ||l_i - g_j||^2  +  sum over all i of logistic(c_i, x_i)

with x_i = 1 for a matched output and 0 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor


class Match(NamedTuple):
    """Matched pairs: ground-truth row ``gt[m]`` is assigned to prior ``prior[m]``."""

    gt: Tensor
    prior: Tensor


class MultiBoxLoss(NamedTuple):
    total: Tensor
    location: Tensor
    confidence: Tensor


def match_priors(priors: Tensor, ground_truth: Tensor) -> Match:
    """Bipartite assignment of ground truths to priors minimising the summed squared corner distance.

    Every ground truth gets its own prior when there are at least as many priors as boxes (the
    Hungarian method via SciPy; a greedy nearest-prior rule would give two overlapping objects the
    same output and lose one of them).
    """
    if not len(ground_truth):
        empty = torch.zeros(0, dtype=torch.long)
        return Match(empty, empty)
    cost = torch.cdist(ground_truth.double(), priors.double()).pow(2)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return Match(torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))


def multibox_loss(
    boxes: Tensor, logits: Tensor, priors: Tensor, ground_truth: Sequence[Tensor], alpha: float
) -> MultiBoxLoss:
    """Mean over the batch of the per-image MultiBox loss.

    ``boxes`` (B, K, 4) and ``logits`` (B, K) are the network outputs, ``priors`` (K, 4) the
    priors, ``ground_truth`` one (G, 4) tensor of normalised xyxy boxes per image.
    """
    if len(ground_truth) != len(boxes):
        raise ValueError(f"{len(boxes)} images but {len(ground_truth)} ground-truth tensors")
    targets = torch.zeros_like(logits)
    location = boxes.new_zeros(())
    for b, gt in enumerate(ground_truth):
        match = match_priors(priors, gt)
        targets[b, match.prior.to(logits.device)] = 1.0
        residual = boxes[b, match.prior.to(boxes.device)] - gt[match.gt.to(gt.device)].to(boxes)
        location = location + residual.pow(2).sum()
    location = alpha / 2 * location / len(boxes)
    confidence = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(boxes)
    return MultiBoxLoss(location + confidence, location, confidence)
