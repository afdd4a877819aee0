"""``incdet train regions``: fit a region classifier on a dataset split, R-CNN style, with Lightning.

One code path from one CPU to many GPUs: the config's ``trainer:`` mapping goes straight to
``lightning.Trainer`` (devices, strategy: ddp, precision, ...). Only rank 0 writes the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import torch

from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.data.classes import read_class_list
from incdet.train.averaging import ParameterAveraging
from incdet.train.regions.config import RegionTrainConfig
from incdet.train.regions.data import RegionDataModule, load_split
from incdet.train.regions.module import RegionClassifierModule
from incdet.train.regions.pretrained import initialise_from
from incdet.train.run_dir import check_writable, fit, make_trainer, resume_checkpoint


def proposal_stores(cfg: RegionTrainConfig) -> dict[str, Path]:
    """Each split's proposal store: the configured path, or ``out_dir/proposals/<split>.db``."""
    default = Path(cfg.out_dir) / "proposals"
    return {"train": Path(cfg.data.train_proposals or default / "train.db"), "val": Path(cfg.data.val_proposals or default / "val.db")}


def train_regions(cfg: RegionTrainConfig, callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train, keep Lightning checkpoints and CSV logs in ``out_dir``, export the model file."""
    resume = resume_checkpoint(cfg.out_dir, cfg.resume)
    check_writable(cfg.export, "export")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    L.seed_everything(cfg.seed, workers=True)
    given = read_class_list(cfg.data.classes) if cfg.data.classes else None
    train = load_split(cfg.data.train, cfg.data.train_split, given)
    val = load_split(cfg.data.val, cfg.data.val_split, train.classes) if cfg.data.val else None
    spec = RegionClassifierSpec(
        arch=cfg.model.arch, classes=tuple(train.classes), input_size=cfg.model.input_size,
        context_pad=cfg.model.resolved_context_pad, width=cfg.model.width, low_res=cfg.model.low_res, bbox_reg=cfg.model.bbox_reg,
    )
    module = RegionClassifierModule(spec, cfg.optim, bbox_loss_weight=cfg.model.bbox_loss_weight, freeze=cfg.model.freeze_until)
    if cfg.model.init and resume is None:  # a resumed run has every weight in its checkpoint
        initialise_from(module.model, cfg.model.init, spec.arch, spec.width, spec.low_res)
    sampling = {"fg_iou": cfg.data.fg_iou, "bbox_iou": cfg.data.bbox_iou, "regions_per_image": cfg.data.regions_per_image,
                "fg_fraction": cfg.data.fg_fraction}
    data = RegionDataModule(train, val, proposal_stores(cfg), cfg.data.proposals, sampling=sampling,
                            images_per_batch=cfg.data.images_per_batch, num_workers=cfg.data.num_workers,
                            proposal_workers=cfg.data.proposal_workers, seed=cfg.seed, crop=(spec.input_size, spec.context_pad))
    del train, val  # the data module packs them; nothing else may keep the per-image records alive

    averaging = []
    if cfg.optim.ema_decay is not None:
        # The v3 paper evaluates a running average of the weights: validation, checkpoints and the
        # export use it, from the first step of epoch ema_start_epoch on.
        averaging = [ParameterAveraging(start_epoch=cfg.optim.ema_start_epoch, decay=cfg.optim.ema_decay)]
    trainer = make_trainer(cfg, [*averaging, *callbacks])
    fit(trainer, module, data, ckpt_path=resume)
    if trainer.is_global_zero:
        metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
        final = RegionClassifierSpec(**{**spec.__dict__, "metadata": {"epochs": trainer.current_epoch, "metrics": metrics}})
        save_region_classifier(cfg.export, final, module.model)
    return Path(cfg.export)
