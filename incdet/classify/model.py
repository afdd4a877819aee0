"""The region classifier network: an Inception network over C classes + background, optionally with
a second head that regresses each class's box from the same pooled features.

The regressor is Fast R-CNN's (a linear layer over the features the classifier reads, trained
jointly with smooth L1) rather than R-CNN's ridge regression on frozen features: it trains in the
same Lightning run as the classifier, needs no second pass to collect features, and its targets
follow R-CNN's definition (see ``incdet.boxes.encode_deltas``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class RegionOutput(NamedTuple):
    """``logits`` (B, C + 1), column 0 background; ``deltas`` (B, 4 * (C + 1)) box regression per
    class (in ``incdet.boxes.encode_deltas`` units), or None for a classifier without a regressor."""

    logits: Tensor
    deltas: Tensor | None


class RegionClassifier(nn.Module):
    """``net`` (a GoogLeNet / Inception-v3 of ``incdet.nets`` with ``num_outputs`` outputs) plus, with
    ``bbox_reg``, a class-specific box regressor on its pooled features."""

    def __init__(self, net: nn.Module, num_outputs: int, bbox_reg: bool = False) -> None:
        super().__init__()
        self.net = net
        self.bbox_pred = nn.Linear(net.fc.in_features, 4 * num_outputs) if bbox_reg else None
        if self.bbox_pred is not None:
            # Start at "keep the proposal": zero deltas, as Fast R-CNN initialises its regressor (std 0.001).
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, crops: Tensor) -> RegionOutput:
        """``crops``: (B, 3, S, S) ImageNet mean/std-normalised warped regions."""
        features = self.net.dropout(self.net.forward_pooled(crops)[0])
        deltas = self.bbox_pred(features) if self.bbox_pred is not None else None
        return RegionOutput(self.net.fc(features), deltas)

    @staticmethod
    def upgrade_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Files written before the regressor existed hold the bare network's keys (``fc.weight``);
        this module nests them under ``net.``."""
        if any(key.startswith("net.") for key in state):
            return state
        return {f"net.{key}": value for key, value in state.items()}
