"""The region classifier as a LightningModule: model, loss and optimizer in one place."""

from __future__ import annotations

import lightning as L
import torch.nn.functional as F
from torch import Tensor

from incdet.classify.checkpoint import RegionClassifierSpec
from incdet.train.optim import make_optimizer, make_step_decay
from incdet.train.regions.config import OptimConfig


class RegionClassifierModule(L.LightningModule):
    """Cross-entropy over C classes + background, with the v3 paper's label smoothing."""

    def __init__(self, spec: RegionClassifierSpec, optim: OptimConfig) -> None:
        super().__init__()
        self.spec = spec
        self.optim = optim
        self.model = spec.build()

    def forward(self, crops: Tensor) -> Tensor:
        return self.model(crops).logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        crops, labels = batch
        logits = self(crops)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.optim.label_smoothing)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", (logits.argmax(1) == labels).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        crops, labels = batch
        logits = self(crops)
        self.log("val_loss", F.cross_entropy(logits, labels), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == labels).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> dict:
        optimizer = make_optimizer(self.parameters(), self.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_step_decay(optimizer, self.optim), "interval": "epoch"}}
