"""``incdet train regions``: fit a region classifier on a dataset split, R-CNN style, with Lightning."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from tqdm import tqdm

from incdet.classify.checkpoint import RegionClassifierSpec, save_region_classifier
from incdet.data.classes import read_class_list
from incdet.data.dataset import load_dataset
from incdet.errors import InputError
from incdet.io import read_image
from incdet.proposals.batch import fill_store
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore
from incdet.structures import SkipReport
from incdet.train.regions.config import RegionTrainConfig
from incdet.train.regions.data import RegionDataModule, RegionTable, build_region_table
from incdet.train.regions.module import RegionClassifierModule


def cached_proposals(cache: Path, image_paths: list[Path], settings: SearchSettings) -> tuple[dict[Path, np.ndarray], SkipReport]:
    """Selective-search boxes, computed once (the slow stage) into the proposal store ``cache``."""
    store = ProposalStore(cache, settings.to_dict())
    items = [(p.name, p) for p in image_paths]
    with tqdm(total=len(items), desc=f"proposals for {cache.name}", unit="img") as bar:
        skipped = fill_store(store, items, settings, on_done=lambda _: bar.update())
    return {p: store[p.name].boxes.numpy() for p in image_paths if p.name in store}, skipped


def load_region_table(path: str, split: str | None, classes: list[str] | None, cfg: RegionTrainConfig, cache: Path) -> tuple[RegionTable, list[str]]:
    """Label the proposals of a dataset split; bad images and annotations are skipped and reported."""
    dataset = load_dataset(path, split=split, classes=classes)
    for item in dataset.skipped.items:
        print(f"skipped {item.message}", file=sys.stderr)
    paths = [dataset.image_path(ann) for ann in dataset.annotations]
    proposals, skipped = cached_proposals(cache, paths, SearchSettings(superpixel_scale=cfg.data.superpixel_scale))
    for message in skipped.messages():
        print(f"skipped {message}", file=sys.stderr)
    kept = [(ann, p) for ann, p in zip(dataset.annotations, paths) if p in proposals]
    if not kept:
        raise InputError(path, "no usable training images")
    images = [read_image(p) for _, p in kept]
    table = build_region_table(images, [a for a, _ in kept], [proposals[p] for _, p in kept], dataset.classes, cfg.data.fg_iou)
    return table, dataset.classes


def train_regions(cfg: RegionTrainConfig) -> Path:
    """Train, keep Lightning checkpoints and CSV logs in ``out_dir``, export the model file."""
    L.seed_everything(cfg.seed, workers=True)
    given = read_class_list(cfg.data.classes) if cfg.data.classes else None
    cache = Path(cfg.data.proposal_cache or Path(cfg.out_dir) / "proposals")
    scale = f"ss{cfg.data.superpixel_scale:g}"
    train, classes = load_region_table(cfg.data.train, cfg.data.train_split, given, cfg, cache / f"train_{scale}.db")
    val = None
    if cfg.data.val:
        val, _ = load_region_table(cfg.data.val, cfg.data.val_split, classes, cfg, cache / f"val_{scale}.db")
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
        start = cfg.optim.ema_start_epoch * cfg.data.batches_per_epoch
        callbacks.append(EMAWeightAveraging(decay=cfg.optim.ema_decay, update_starting_at_step=start))
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, default_root_dir=out_dir, logger=CSVLogger(out_dir, name="logs"),
        callbacks=callbacks, gradient_clip_val=cfg.optim.gradient_clip, deterministic=True, **cfg.trainer,
    )
    trainer.fit(module, datamodule=data)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
    final = RegionClassifierSpec(**{**spec.__dict__, "metadata": {"epochs": cfg.max_epochs, "metrics": metrics}})
    save_region_classifier(cfg.export, final, module.model)
    return Path(cfg.export)
