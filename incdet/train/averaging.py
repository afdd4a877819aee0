"""The running (or Polyak) average of the weights that every training task validates and exports.

Shared by region, MultiBox and backbone training: the papers evaluate an average of the parameters
(Inception-v3: a running average; GoogLeNet: Polyak averaging), and Lightning's
``WeightAveraging`` keeps it, checkpoints it (so ``resume`` continues it) and swaps it in for
validation.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn


class ParameterAveraging(WeightAveraging):
    """A running average of the weights (and batch-norm statistics) for validation and export.

    ``decay`` set: exponential moving average (Inception-v3: "evaluation using a running average
    of the parameters"); None: the equal-weight mean of every iterate since the start, i.e.
    Polyak averaging (GoogLeNet). The average begins as a copy of the model at the start of
    epoch ``start_epoch``: averaging in the random initialisation would bias batch-norm
    statistics for long.

    Lightning's WeightAveraging swaps the average in for validation and checkpoints and leaves it
    in the model when training ends, but it would do so with the *initial* weights before the
    first update; this subclass uses the current weights until averaging has started.
    """

    def __init__(self, start_epoch: int, decay: float | None) -> None:
        super().__init__(**({"multi_avg_fn": get_ema_multi_avg_fn(decay)} if decay is not None else {}))
        self.start_epoch = start_epoch
        self.start_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Optimizer steps per epoch are known only once the (possibly sharded) data is set up.
        steps = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        self.start_step = self.start_epoch * steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step

    @property
    def started(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swapped = self.started
        if self._swapped:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(self, "_swapped", False):
            super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started:
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.started:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

