"""The classification backbone as a LightningModule: side-head loss, top-1/top-5 on validation."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

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
        # Channels-last: the layout cuDNN's tensor-core convolutions and oneDNN prefer.
        self.model.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Any:
        return self.model(images.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every image of the batch was unreadable (reported by the data module)
            return None
        images, labels = batch
        out = self(images)
        logits, aux = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())
        loss = classification_loss(logits, aux, labels, self.optim.label_smoothing, self.aux_weight)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_top1", topk_correct(logits, labels, 1).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> None:
        if batch is None:
            return
        images, labels = batch
        logits = self(images)
        self.log("val_loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val_top1", topk_correct(logits, labels, 1).float().mean(), prog_bar=True, sync_dist=True)
        self.log("val_top5", topk_correct(logits, labels, 5).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> dict:
        optimizer = make_optimizer(self.parameters(), self.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_step_decay(optimizer, self.optim), "interval": "epoch"}}
