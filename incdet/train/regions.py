"""``incdet train regions``: fit a region classifier on a dataset split, R-CNN style, with Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from tqdm import tqdm

from incdet.classify.checkpoint import RegionClassifierSpec, save_region_classifier
from incdet.data.annotation import Annotation
from incdet.data.classes import read_class_list
from incdet.data.voc import read_voc_dir
from incdet.errors import InputError
from incdet.io import read_image
from incdet.proposals.store import load_proposals, propose_images, save_proposals
from incdet.train.region_config import RegionTrainConfig
from incdet.train.region_data import RegionDataModule, RegionTable, build_region_table
from incdet.train.region_module import RegionClassifierModule


def split_proposals(split_dir: Path, image_paths: list[Path], superpixel_scale: float) -> list[np.ndarray]:
    """Selective-search boxes of a split, computed once and cached beside it (the slow stage)."""
    cache = split_dir / f"proposals_ss{superpixel_scale:g}.npz"
    stored = load_proposals(cache) if cache.is_file() else {}
    missing = [p for p in image_paths if p.name not in stored]
    if missing:
        with tqdm(total=len(missing), desc=f"proposals {split_dir.name}", unit="img") as bar:
            run = propose_images(missing, superpixel_scale, on_done=lambda _: bar.update())
        if run.failures:
            raise InputError(run.failures[0][0], f"cannot compute proposals for training ({run.failures[0][1]})")
        stored.update({p.name: boxes for p, boxes in run.boxes.items()})
        save_proposals(cache, stored)
    return [stored[p.name] for p in image_paths]


def load_region_table(root: Path, split: str, classes: list[str], cfg: RegionTrainConfig) -> RegionTable:
    split_dir = root / split
    annotations: list[Annotation] = read_voc_dir(split_dir / "annotations")
    known = set(classes)
    for ann in annotations:
        unknown = sorted(set(ann.labels) - known)
        if unknown:
            raise InputError(split_dir / "annotations" / f"{Path(ann.filename).stem}.xml", f"class {unknown[0]!r} is not in classes.txt")
    image_paths = [split_dir / "images" / ann.filename for ann in annotations]
    images = [read_image(p) for p in image_paths]
    proposals = split_proposals(split_dir, image_paths, cfg.data.superpixel_scale)
    return build_region_table(images, annotations, proposals, classes, cfg.data.fg_iou)


def train_regions(cfg: RegionTrainConfig) -> Path:
    """Train, keep Lightning checkpoints and CSV logs in ``out_dir``, export the model file."""
    L.seed_everything(cfg.seed, workers=True)
    root = Path(cfg.data.root)
    classes = read_class_list(root / "classes.txt")
    train = load_region_table(root, cfg.data.train_split, classes, cfg)
    val = load_region_table(root, cfg.data.val_split, classes, cfg) if cfg.data.val_split else None
    spec = RegionClassifierSpec(
        arch=cfg.model.arch, classes=tuple(classes), input_size=cfg.model.input_size,
        context_pad=cfg.model.resolved_context_pad, width=cfg.model.width, low_res=cfg.model.low_res,
    )
    data = RegionDataModule(
        train, val, input_size=spec.input_size, context_pad=spec.context_pad, batch_size=cfg.data.batch_size,
        fg_fraction=cfg.data.fg_fraction, batches_per_epoch=cfg.data.batches_per_epoch,
        num_workers=cfg.data.num_workers, seed=cfg.seed,
    )
    module = RegionClassifierModule(spec, cfg.optim)
    out_dir = Path(cfg.out_dir)
    callbacks: list[L.Callback] = [ModelCheckpoint(dirpath=out_dir / "checkpoints", save_last=True)]
    if cfg.optim.ema_decay is not None:
        # The v3 paper evaluates a running average of the weights; Lightning's callback
        # validates with the average and leaves it in the model when training ends.
        callbacks.append(EMAWeightAveraging(decay=cfg.optim.ema_decay))
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, default_root_dir=out_dir, logger=CSVLogger(out_dir, name="logs"),
        callbacks=callbacks, gradient_clip_val=cfg.optim.gradient_clip, deterministic=True, **cfg.trainer,
    )
    trainer.fit(module, datamodule=data)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
    final = RegionClassifierSpec(**{**spec.__dict__, "metadata": {"epochs": cfg.max_epochs, "metrics": metrics}})
    save_region_classifier(cfg.export, final, module.model)
    return Path(cfg.export)
