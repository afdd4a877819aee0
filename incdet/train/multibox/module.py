"""The MultiBox network as a LightningModule: the MultiBox loss, and proposal coverage on validation."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torchvision.ops import box_iou

from incdet.multibox.loss import multibox_loss
from incdet.multibox.network import MultiBoxNet, MultiBoxOutput
from incdet.multibox.propose import select_boxes
from incdet.train.optim import OptimConfig, make_optimizer, make_step_decay


class MultiBoxModule(L.LightningModule):
    """Trains ``model`` with alpha-weighted location loss + logistic confidence loss."""

    def __init__(self, model: MultiBoxNet, optim: OptimConfig, alpha: float, val_top_n: int) -> None:
        super().__init__()
        # Channels-last: the layout cuDNN's tensor-core convolutions and oneDNN prefer.
        self.model = model.to(memory_format=torch.channels_last)
        self.optim = optim
        self.alpha = alpha
        self.val_top_n = val_top_n

    def forward(self, images: Tensor) -> MultiBoxOutput:
        return self.model(images.contiguous(memory_format=torch.channels_last))

    def _step(self, batch: tuple[Tensor, list[Tensor]], stage: str) -> tuple[Tensor, MultiBoxOutput]:
        """Network outputs and loss of a batch, with the loss terms logged under ``stage``."""
        images, boxes = batch
        out = self(images)
        loss = multibox_loss(out.boxes, out.logits, self.model.priors, boxes, self.alpha)
        size = len(images)
        self.log(f"{stage}_loss", loss.total, prog_bar=True, batch_size=size)
        self.log(f"{stage}_loc", loss.location, batch_size=size)
        self.log(f"{stage}_conf", loss.confidence, batch_size=size)
        return loss.total, out

    def training_step(self, batch: tuple[Tensor, list[Tensor]], batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: tuple[Tensor, list[Tensor]], batch_idx: int) -> None:
        _, out = self._step(batch, "val")
        # Coverage@0.5 of the top-N proposals: what the detector will actually get. IoU does not
        # change when both axes are rescaled, so the network's input pixels serve as well as the image's.
        side = self.model.input_size
        hits = total = 0
        for boxes, logits, gt in zip(out.boxes, out.logits, batch[1]):
            kept, _ = select_boxes(boxes, logits, side, side, self.val_top_n)
            total += len(gt)
            if len(gt) and len(kept):
                iou = box_iou(gt * side, torch.as_tensor(kept, device=gt.device))
                hits += int((iou.max(dim=1).values >= 0.5).sum())
        if total:
            self.log(f"val_cov_top{self.val_top_n}", hits / total, prog_bar=True, batch_size=total)

    def configure_optimizers(self) -> dict:
        optimizer = make_optimizer(self.parameters(), self.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_step_decay(optimizer, self.optim), "interval": "epoch"}}
