"""``incdet train backbone``: train an Inception classification backbone with Lightning, as the papers did.

One code path from one CPU to many GPUs: the config's ``trainer:`` mapping goes straight to
``lightning.Trainer`` (devices, strategy: ddp, precision, ...), and Lightning shards the data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from incdet.data.classification import ClassificationSet, load_classification
from incdet.nets.backbone_file import BackboneSpec, save_backbone, save_state_dict
from incdet.train.averaging import ParameterAveraging
from incdet.train.backbone.config import BackboneTrainConfig
from incdet.train.backbone.data import BackboneDataModule
from incdet.train.backbone.module import BackboneModule
from incdet.train.run_dir import check_writable, fit, make_trainer, resume_checkpoint

log = logging.getLogger(__name__)


def load_splits(cfg: BackboneTrainConfig) -> tuple[ClassificationSet, ClassificationSet | None]:
    data = cfg.data
    train = load_classification(data.format, data.root, data.train_split)
    val = load_classification(data.format, data.root, data.val_split, classes=train.classes) if data.val_split else None
    for split in (train, val):
        for item in split.skipped.items if split else ():
            rank_zero_only(log.warning)("skipped %s", item.message)
    return train, val


def backbone_trainer(cfg: BackboneTrainConfig, callbacks: list[L.Callback] = ()) -> tuple[L.Trainer, ParameterAveraging | None]:
    """The Lightning trainer of a config; returns the averaging callback too (None with ``averaging: none``)."""
    averaging = None
    if cfg.averaging != "none":
        decay = cfg.optim.ema_decay if cfg.averaging == "ema" else None
        averaging = ParameterAveraging(start_epoch=cfg.optim.ema_start_epoch, decay=decay)
    trainer = make_trainer(cfg, [*([averaging] if averaging else []), *callbacks])
    return trainer, averaging


def train_backbone(cfg: BackboneTrainConfig, callbacks: list[L.Callback] = ()) -> Path:
    """Train, keep Lightning checkpoints and CSV logs in ``out_dir``, export the (averaged) weights."""
    resume = resume_checkpoint(cfg.out_dir, cfg.resume)
    check_writable(cfg.export, "export")
    check_writable(cfg.export_state_dict, "export_state_dict")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    L.seed_everything(cfg.seed, workers=True)
    train, val = load_splits(cfg)
    spec = BackboneSpec(arch=cfg.model.arch, classes=tuple(train.classes), input_size=cfg.model.input_size,
                        width=cfg.model.width, low_res=cfg.model.low_res)
    data = BackboneDataModule(train, val, input_size=spec.input_size, augment=cfg.augment,
                              batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed)
    module = BackboneModule(spec, cfg.optim, aux_logits=cfg.model.aux_logits, aux_weight=cfg.model.aux_weight,
                            dropout=cfg.model.dropout, pretrained=cfg.model.pretrained)
    if module.loaded is not None and module.loaded.kept_initial:
        rank_zero_only(log.info)("%s: loaded; newly initialised: %s", cfg.model.pretrained, ", ".join(module.loaded.kept_initial))
    trainer, _ = backbone_trainer(cfg, callbacks)
    fit(trainer, module, data, ckpt_path=resume)
    if trainer.is_global_zero:
        metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
        final = BackboneSpec(**{**spec.__dict__, "metadata": {"epochs": trainer.current_epoch, "averaging": cfg.averaging, "metrics": metrics}})
        save_backbone(cfg.export, final, module.model)
        if cfg.export_state_dict:
            save_state_dict(cfg.export_state_dict, module.model)
    return Path(cfg.export)

