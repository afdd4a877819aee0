"""The region classifier as a LightningModule: warp on the device, loss, metrics and optimizer.

Batches arrive as uint8 images plus regions (:class:`incdet.train.regions.dataset.RegionBatch`);
normalisation, the context-padded ``roi_align`` warp and mirroring (:mod:`incdet.train.regions.crops`)
run here, on the training device, unless the DataLoader workers did them (training on the CPU). The loss
is cross-entropy over C classes + background (with the v3 paper's label smoothing) plus, with a box
regressor, Fast R-CNN's smooth L1 on the regressed regions' deltas of their class.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from incdet.classify.classifier_file import RegionClassifierSpec
from incdet.classify.model import RegionOutput
from incdet.regions.labels import BACKGROUND
from incdet.train.optim import OptimConfig, make_optimizer, make_step_decay
from incdet.train.regions.crops import prepare_crops
from incdet.train.regions.dataset import RegionBatch
from incdet.train.regions.pretrained import freeze_until

log = logging.getLogger(__name__)


def box_regression_loss(deltas: Tensor, labels: Tensor, targets: Tensor, regress: Tensor) -> Tensor:
    """Fast R-CNN's box loss: smooth L1 (beta 1) on the 4 deltas of each regressed region's own
    class, summed and divided by the number of regions in the batch. ``deltas`` (N, 4 * (C + 1))."""
    rows = torch.nonzero(regress).flatten()
    picked = deltas.view(len(deltas), -1, 4)[rows, labels[rows]]
    return F.smooth_l1_loss(picked, targets[rows], beta=1.0, reduction="sum") / max(len(deltas), 1)


class RegionClassifierModule(L.LightningModule):
    """``spec``'s network trained on warped regions; ``freeze`` names the last layer kept fixed."""

    def __init__(self, spec: RegionClassifierSpec, optim: OptimConfig, *, bbox_loss_weight: float = 1.0,
                 freeze: str | None = None) -> None:
        super().__init__()
        self.spec, self.optim, self.bbox_loss_weight = spec, optim, bbox_loss_weight
        # Channels-last: the layout cuDNN's tensor-core convolutions and oneDNN prefer (detection uses it too).
        self.model = spec.build().to(memory_format=torch.channels_last)
        self.frozen = freeze_until(self.model.net, spec.arch, freeze) if freeze else []
        self.train()  # Lightning keeps each layer's mode as it finds it: the frozen ones start in eval
        self.reported: set[str] = set()
        self._val = torch.zeros(0)

    def forward(self, crops: Tensor) -> RegionOutput:
        return self.model(crops.contiguous(memory_format=torch.channels_last))

    def train(self, mode: bool = True) -> RegionClassifierModule:
        super().train(mode)
        for layer in self.frozen:  # fixed layers keep their batch-norm statistics too
            layer.eval()
        return self

    def _report(self, batch: RegionBatch) -> None:
        for message in batch.skipped:
            if message not in self.reported:  # each bad image once, however many epochs
                self.reported.add(message)
                log.warning("skipped %s", message)

    def _losses(self, batch: RegionBatch, train: bool) -> tuple[RegionOutput, Tensor, Tensor | None]:
        if batch.crops is None:  # else the DataLoader workers prepared them (training on the CPU)
            batch = prepare_crops(batch, self.spec.input_size, self.spec.context_pad, flip=train)
        out = self(batch.crops)
        smoothing = self.optim.label_smoothing if train else 0.0
        classification = F.cross_entropy(out.logits, batch.labels, label_smoothing=smoothing)
        boxes = box_regression_loss(out.deltas, batch.labels, batch.targets, batch.regress) if out.deltas is not None else None
        return out, classification, boxes

    def training_step(self, batch: RegionBatch, batch_idx: int) -> Tensor | None:
        self._report(batch)
        if not len(batch.labels):  # every image of the batch was unusable (reported above)
            return None
        out, classification, boxes = self._losses(batch, train=True)
        size = len(batch.labels)
        loss = classification if boxes is None else classification + self.bbox_loss_weight * boxes
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        if boxes is not None:
            self.log("train_cls_loss", classification, batch_size=size)
            self.log("train_bbox_loss", boxes, batch_size=size)
        self.log("train_acc", (out.logits.argmax(1) == batch.labels).float().mean(), prog_bar=True, batch_size=size)
        return loss

    def on_validation_epoch_start(self) -> None:
        # Per class: regions and correct ones; then summed loss terms and their region count.
        self._val = torch.zeros(2 * self.spec.num_outputs + 3, device=self.device)

    def validation_step(self, batch: RegionBatch, batch_idx: int) -> None:
        self._report(batch)
        if not len(batch.labels):
            return
        out, classification, boxes = self._losses(batch, train=False)
        classes, size = self.spec.num_outputs, len(batch.labels)
        right = out.logits.argmax(1) == batch.labels
        counts = F.one_hot(batch.labels, classes)  # (bincount has no deterministic CUDA kernel)
        self._val[:classes] += counts.sum(0)
        self._val[classes : 2 * classes] += counts[right].sum(0)
        self._val[-3:] += torch.stack([classification.detach() * size, (boxes.detach() * size if boxes is not None else classification.new_zeros(())),
                                       classification.new_tensor(float(size))])

    def on_validation_epoch_end(self) -> None:
        # Sums over every rank, then ratios: accuracies over regions, not means of batch means (the
        # ranks then log equal values; sync_dist only keeps Lightning from warning about it).
        totals = self.trainer.strategy.reduce(self._val, reduce_op="sum") if self.trainer.world_size > 1 else self._val
        classes = self.spec.num_outputs
        seen, right, (loss, box_loss, size) = totals[:classes], totals[classes : 2 * classes], totals[-3:]
        if size == 0:
            return
        present = seen > 0
        foreground = torch.arange(classes, device=seen.device) != BACKGROUND
        self.log("val_loss", loss / size, prog_bar=True, sync_dist=True)
        self.log("val_acc", right.sum() / size, prog_bar=True, sync_dist=True)
        self.log("val_fg_acc", right[foreground].sum() / seen[foreground].sum().clamp(min=1), sync_dist=True)
        self.log("val_balanced_acc", (right[present] / seen[present]).mean(), sync_dist=True)
        if self.model.bbox_pred is not None:
            self.log("val_bbox_loss", box_loss / size, sync_dist=True)

    def configure_optimizers(self) -> dict:
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = make_optimizer(trainable, self.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_step_decay(optimizer, self.optim), "interval": "epoch"}}
