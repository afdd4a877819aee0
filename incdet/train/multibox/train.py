"""``incdet train multibox``: cluster priors on the training boxes, fit a MultiBox network with Lightning."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from incdet.errors import InputError
from incdet.multibox.multibox_file import load_multibox, save_multibox
from incdet.multibox.network import MultiBoxNet
from incdet.multibox.priors import cluster_priors, mirror_boxes
from incdet.train.multibox.config import MultiBoxTrainConfig
from incdet.train.multibox.data import MultiBoxDataModule, MultiBoxTable, load_split
from incdet.train.multibox.module import MultiBoxModule
from incdet.train.run_dir import check_writable, fit, make_trainer, resume_checkpoint


def initial_network(cfg: MultiBoxTrainConfig, train: MultiBoxTable, source: Path) -> MultiBoxNet:
    """Continue from ``init_checkpoint`` (its priors, refused if it disagrees with the config) or start
    afresh over priors clustered from the training boxes (and their mirror images when training flips)."""
    spec = cfg.model.spec()
    if cfg.init_checkpoint:
        _, loaded = load_multibox(cfg.init_checkpoint, expected=spec)
        model = spec.build(loaded.priors, dropout=cfg.model.dropout)
        model.load_state_dict(loaded.state_dict())
        return model
    boxes = [b for b in train.boxes if len(b)]
    if cfg.data.flip:
        boxes += [mirror_boxes(b) for b in boxes]
    try:
        priors = cluster_priors(boxes, cfg.model.num_priors, cfg.seed)
    except ValueError as exc:
        raise InputError(source, f"cannot make MultiBox priors ({exc})") from None
    # Each ground truth claims one prior, so this is the share of outputs that are positive.
    positive_rate = min(0.5, max(1e-4, sum(len(b) for b in train.boxes) / len(train) / cfg.model.num_priors))
    return spec.build(torch.from_numpy(priors), dropout=cfg.model.dropout, positive_rate=positive_rate)


def train_multibox(cfg: MultiBoxTrainConfig, callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train, keep Lightning checkpoints and CSV logs in ``out_dir``, export the MultiBox file."""
    resume = resume_checkpoint(cfg.out_dir, cfg.resume)
    check_writable(cfg.export, "export")
    L.seed_everything(cfg.seed, workers=True)
    train = load_split(cfg.data.train, cfg.data.train_split, cfg.model.input_size)
    val = load_split(cfg.data.val, cfg.data.val_split, cfg.model.input_size) if cfg.data.val else None
    model = initial_network(cfg, train, Path(cfg.data.train))
    data = MultiBoxDataModule(train, val, batch_size=cfg.data.batch_size, flip=cfg.data.flip, num_workers=cfg.data.num_workers,
                              seed=cfg.seed)
    module = MultiBoxModule(model, cfg.optim, cfg.alpha, cfg.val_top_n)

    averaging: list[L.Callback] = []
    if cfg.optim.ema_decay is not None:
        averaging.append(EMAWeightAveraging(decay=cfg.optim.ema_decay))
    trainer = make_trainer(cfg, [*averaging, *callbacks])
    start = time.perf_counter()
    fit(trainer, module, data, ckpt_path=resume)
    seconds = time.perf_counter() - start
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
    metadata = {
        "epochs": trainer.current_epoch, "train_images": len(train), "train_boxes": int(sum(len(b) for b in train.boxes)),
        "train_seconds": round(seconds, 1), "metrics": metrics,
    }
    if trainer.is_global_zero:
        save_multibox(cfg.export, replace(cfg.model.spec(), metadata=metadata), module.model)
    return Path(cfg.export)
