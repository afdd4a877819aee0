"""Model size and cost: parameters and multiply-adds, the units the Inception papers budget in."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (side heads included when the model has them)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-adds of one eval-mode forward pass on one ``input_size`` x ``input_size`` image.

    FlopCounterMode counts each multiply-add of convolutions and matrix products as two
    FLOPs; pooling, batch norm and ReLU are not counted, as in the papers' budgets. Side
    heads do not run in eval mode, so they cost nothing here, as at inference.
    """
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
