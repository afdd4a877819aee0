"""Training data that can start an epoch part-way, so a run resumed from a mid-epoch checkpoint sees
each image of that epoch exactly once.

Lightning restores a mid-epoch checkpoint's loop counters (the step, the batch of the epoch) but
restarts the data at the epoch's first batch, and it creates the first iterator before it calls the
sampler's ``set_epoch``. So the data module itself records, in every checkpoint, the epoch and how
many of its batches have been trained on, and builds the resumed run's sampler already positioned
there: the epoch's order (seeded by epoch, the same in every run) minus the batches already done.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import lightning as L
from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """This rank's share of each epoch in a seeded order that changes every epoch, which may start
    ``skip`` samples in. A :class:`DistributedSampler`, so Lightning keeps it under DDP too."""

    def __init__(self, dataset: Sized, *, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        self.skip = 0

    def start_at(self, epoch: int, samples: int) -> None:
        """Begin the next iteration ``samples`` into ``epoch``."""
        super().set_epoch(epoch)
        self.skip = samples

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())[self.skip :]
        self.skip = 0  # once: the next epoch starts at its beginning
        return iter(order)


class ResumableDataModule(L.LightningDataModule):
    """A data module whose training sampler (:meth:`train_sampler`) continues where a checkpoint
    stopped; its ``state_dict`` goes into every Lightning checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self._start = (0, 0)  # (epoch, batches of it already trained on) of the next training iteration

    def state_dict(self) -> dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        epoch = trainer.current_epoch
        if done >= trainer.num_training_batches:  # saved at the epoch's end: resume with the next one
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._start = (state["epoch"], state["batches"])

    def train_sampler(self, dataset: Sized, batch_size: int, seed: int) -> EpochSampler:
        """A shuffling sampler over this rank's share of ``dataset``, positioned after the batches of
        the resumed epoch that were already trained on."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(dataset, shuffle=True, seed=seed, num_replicas=world, rank=rank)
        epoch, batches = self._start
        sampler.start_at(epoch, batches * batch_size)
        self._start = (0, 0)
        return sampler
