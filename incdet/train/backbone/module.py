"""The classification backbone as a LightningModule, and the weight averaging its evaluation uses."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch.nn.functional as F
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor
from torch.optim.swa_utils import get_ema_multi_avg_fn

from incdet.nets.backbone_file import BackboneSpec
from incdet.nets.factory import load_backbone_weights
from incdet.train.optim import OptimConfig, make_optimizer, make_step_decay


def classification_loss(logits: Tensor, aux: tuple[Tensor, ...], labels: Tensor, label_smoothing: float, aux_weight: float) -> Tensor:
    """Cross-entropy against the v3 paper's smoothed labels q'(k) = (1 - eps) delta(k, y) + eps / K,
    plus ``aux_weight`` times the same loss of every side head (v1 paper: 0.3 each)."""
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    for side in aux:
        loss = loss + aux_weight * F.cross_entropy(side, labels, label_smoothing=label_smoothing)
    return loss


def topk_correct(logits: Tensor, labels: Tensor, k: int) -> Tensor:
    """Per example: is the label among the ``k`` highest scores (all of them when there are fewer classes)?"""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1)


class BackboneModule(L.LightningModule):
    """Inception classifier with side heads in training; top-1/top-5 on the (averaged) weights in validation."""

    def __init__(self, spec: BackboneSpec, optim: OptimConfig, *, aux_logits: bool, aux_weight: float,
                 dropout: float | None = None, pretrained: str | None = None) -> None:
        super().__init__()
        self.spec, self.optim = spec, optim
        self.aux_weight = aux_weight
        self.model = spec.build(aux_logits=aux_logits, dropout=dropout)
        self.loaded = load_backbone_weights(self.model, pretrained) if pretrained else None

    def forward(self, images: Tensor) -> Any:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every image of the batch was unreadable (reported by the data module)
            return None
        images, labels = batch
        out = self.model(images)
        logits, aux = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())
        loss = classification_loss(logits, aux, labels, self.optim.label_smoothing, self.aux_weight)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_top1", topk_correct(logits, labels, 1).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> None:
        if batch is None:
            return
        images, labels = batch
        logits = self.model(images)
        self.log("val_loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val_top1", topk_correct(logits, labels, 1).float().mean(), prog_bar=True, sync_dist=True)
        self.log("val_top5", topk_correct(logits, labels, 5).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> dict:
        optimizer = make_optimizer(self.parameters(), self.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_step_decay(optimizer, self.optim), "interval": "epoch"}}


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

