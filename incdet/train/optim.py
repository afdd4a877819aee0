"""Optimizers and learning-rate schedules of the papers' recipes, shared by every training task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

OPTIMIZERS = ("rmsprop", "sgd", "adamw")


@dataclass
class OptimConfig:
    """Defaults are the Inception-v3 recipe (section 8) plus label smoothing (section 7)."""

    name: str = "rmsprop"
    lr: float = 0.045
    momentum: float = 0.9
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1.0
    weight_decay: float = 4e-5
    lr_decay: float = 0.94
    lr_decay_epochs: int = 2
    label_smoothing: float = 0.1
    gradient_clip: float | None = 2.0
    ema_decay: float | None = 0.999
    # The average starts as a copy of the model at this epoch: averaging in the random
    # initialisation would bias batch-norm running statistics for a long time.
    ema_start_epoch: int = 1

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"optim.lr must be a positive number, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"optim.lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.lr_decay_epochs < 1:
            raise ValueError(f"optim.lr_decay_epochs must be >= 1, got {self.lr_decay_epochs}")
        if not (0 <= self.rmsprop_decay < 1 and self.rmsprop_eps > 0):
            raise ValueError(f"optim.rmsprop_decay must be in [0, 1) and optim.rmsprop_eps positive, got "
                             f"{self.rmsprop_decay} and {self.rmsprop_eps}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"optim.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.gradient_clip is not None and not self.gradient_clip > 0:
            raise ValueError(f"optim.gradient_clip must be positive or null, got {self.gradient_clip}")
        if not (self.weight_decay >= 0 and self.momentum >= 0):
            raise ValueError("optim.weight_decay and optim.momentum must be >= 0")
        if self.ema_start_epoch < 0:
            raise ValueError(f"optim.ema_start_epoch must be >= 0, got {self.ema_start_epoch}")


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Inception-v3 (section 8): RMSProp with decay 0.9 and epsilon 1.0; GoogLeNet: SGD, momentum 0.9."""
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rmsprop_decay, eps=cfg.rmsprop_eps, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_step_decay(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.StepLR:
    """The papers' exponential step decay: x0.94 every 2 epochs (v3), 4% every 8 epochs (v1)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_decay_epochs, gamma=cfg.lr_decay)
