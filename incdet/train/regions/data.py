"""The region-training data module: proposals computed once ahead of training, then images streamed.

``setup`` fills each split's proposal store with whatever it lacks or holds stale boxes for, before
the first step: under DDP every rank searches its own share (every world-size-th image) into a
store of its own, and rank 0 merges those into the split's store while the others wait; then
every rank keeps the images the store has boxes for. The training loader shuffles images with an
:class:`~incdet.train.resume.EpochSampler`: under DDP each rank takes a disjoint part of the epoch,
every epoch has a new seeded order, and a run resumed mid-epoch continues with the images that
epoch had not yet reached.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from incdet.data.dataset import load_dataset
from incdet.data.records import Dataset
from incdet.engine.jobs import is_stored, propose_folder
from incdet.engine.run import Execution
from incdet.multibox.proposer import Proposer
from incdet.errors import InputError
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore
from incdet.structures import ImageRecord
from incdet.train.resume import ResumableDataModule
from incdet.train.regions.crops import CropsInWorkers
from incdet.train.regions.dataset import (
    PackedAnnotations,
    RegionDataset,
    collate_regions,
)

log = logging.getLogger(__name__)


def load_split(path: str | Path, split: str | None, classes: Sequence[str] | None) -> Dataset:
    """The ground truth of one split: the one place region training reads a dataset (bad annotation
    files and objects are skipped and reported; ILSVRC's blacklisted images are left out, as
    R-CNN's training left them out)."""
    dataset = load_dataset(path, split=split, classes=classes, purpose="train")
    for message in dataset.skipped.messages():
        rank_zero_only(log.warning)("skipped %s", message)
    if not dataset.annotations:
        raise InputError(path, "no usable annotated images")
    return dataset


class RegionDataModule(ResumableDataModule):
    """Streamed region batches of a training split and a fixed validation sample of a val split.

    ``stores`` maps ``train`` / ``val`` to their proposal-store paths; ``settings`` says how missing
    proposals are made. ``sampling`` holds :class:`RegionDataset`'s keyword arguments.
    """

    def __init__(self, train: Dataset, val: Dataset | None, stores: dict[str, Path], settings: SearchSettings, *,
                 sampling: dict, images_per_batch: int, num_workers: int, proposal_workers: int | None = None,
                 seed: int = 0, crop: tuple[int, int] = (224, 16)) -> None:
        super().__init__()
        self.splits = {name: data for name, data in (("train", train), ("val", val)) if data is not None}
        self.stores, self.settings = stores, settings
        self.sampling, self.images_per_batch = sampling, images_per_batch
        self.num_workers, self.proposal_workers, self.seed = num_workers, proposal_workers, seed
        self.crop = crop  # (input size, context pad): of the warp, wherever it runs
        self.datasets: dict[str, RegionDataset] = {}

    def _fill_stores(self) -> None:
        """Search what the stores lack, each rank its share (the stores live in ``out_dir``, which every
        node must see); on an ILSVRC-size split one process alone would keep every other GPU waiting
        for hours. ``incdet propose`` can fill them ahead instead, e.g. on a Ray cluster."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        barrier = trainer.strategy.barrier if trainer is not None else (lambda name=None: None)
        for name, data in self.splits.items():
            path = self.stores[name]
            if rank == 0:
                ProposalStore(path, self.settings.to_dict()).close()  # created (or its settings checked) once
            barrier(f"{name} proposal store")
            main = ProposalStore(path, readonly=True)
            records = [ImageRecord(data.image_path(ann), ann.filename, i) for i, ann in enumerate(data.annotations)]
            share = [r for r in records[rank::world] if not is_stored(main, r)]
            main.close()
            if world > 1:
                rank_zero_only(log.info)("%s proposals: each of the %d ranks searches its share of the images %s lacks",
                                         name, world, path)
            own = path if world == 1 else path.with_name(f"{path.stem}.rank-{rank}-of-{world}{path.suffix}")
            skipped = propose_folder(share, own, Proposer(self.settings, device="cpu"), execution=Execution(workers=self.proposal_workers))
            for message in skipped.messages():
                log.warning("skipped %s", message)
            barrier(f"{name} proposals searched")
            if world > 1 and rank == 0:
                merged = ProposalStore(path, self.settings.to_dict())
                for other in range(world):
                    part = path.with_name(f"{path.stem}.rank-{other}-of-{world}{path.suffix}")
                    with ProposalStore(part, readonly=True) as searched:
                        merged.update_from(searched)
                    part.unlink()
                merged.close()
            barrier(f"{name} proposals merged")

    def setup(self, stage: str) -> None:
        if self.datasets:
            return
        self._fill_stores()
        for name, data in self.splits.items():
            store = ProposalStore(self.stores[name], readonly=True)
            stored = set(store)
            kept = [ann for ann in data.annotations if ann.filename in stored]
            if len(kept) < len(data.annotations):
                rank_zero_only(log.warning)("%d of %d %s images have no proposals in %s and are left out",
                                            len(data.annotations) - len(kept), len(data.annotations), name, store.path)
            if not kept:
                raise InputError(store.path, f"holds proposals for none of the {name} images")
            store.close()
            packed = PackedAnnotations(data.image_dir, kept, data.classes)
            seed = self.seed if name == "val" else None
            self.datasets[name] = RegionDataset(packed, store, validation_seed=seed, crop=self.crop, **self.sampling)
        # The packed arrays replace the per-image records, which forked workers would otherwise copy.
        self.splits = {}

    def _loader(self, name: str, train: bool) -> DataLoader:
        # On a GPU the module warps; on the CPU, workers warping the next batch keep the step going.
        on_cpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cpu"
        collate = CropsInWorkers(*self.crop, flip=train) if on_cpu and self.num_workers > 0 else collate_regions
        dataset = self.datasets[name]
        sampler = self.train_sampler(dataset, self.images_per_batch, self.seed) if train else None
        return DataLoader(dataset, batch_size=self.images_per_batch, sampler=sampler, collate_fn=collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False) if "val" in self.datasets else []
