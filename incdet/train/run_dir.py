"""A training run's folder and its end: resume or refuse, outputs checked before the work, Ctrl-C.

Every training task (regions, MultiBox, backbone) keeps Lightning checkpoints in
``out_dir/checkpoints`` and CSV logs in ``out_dir/logs``. Hours of training must never be lost or
silently redone, so:

- a rerun into an ``out_dir`` that already holds checkpoints continues it only when asked
  (``resume: true`` or a checkpoint path); otherwise it is refused, rather than restarting at epoch
  0 beside the old run's ``last.ckpt`` (Lightning would write ``last-v1.ckpt``);
- the export path is checked before training starts (a file in the way of its folder, a folder
  named like it, a folder without write permission), not after the last epoch;
- Ctrl-C: Lightning catches KeyboardInterrupt itself, shuts down and exits 1; :func:`fit` turns that
  back into KeyboardInterrupt, so the command exits 130 and no half-trained model is exported;
- an ILSVRC-size epoch takes hours, so ``last.ckpt`` is also written during the epoch (every
  ``checkpoint_every_n_steps`` steps, by default every 10 minutes), and a resumed run continues
  mid-epoch (:mod:`incdet.train.resume`); each write is atomic in the run folder itself.
"""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from incdet.errors import InputError
from incdet.io import atomic_path, check_output_path, remove_orphans

LAST = "last.ckpt"
# Without checkpoint_every_n_steps, last.ckpt is written after this much training time.
CHECKPOINT_INTERVAL = timedelta(minutes=10)


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def resume_checkpoint(out_dir: str | Path, resume: bool | str | None) -> str | None:
    """The checkpoint to continue from (``resume: true``: ``out_dir/checkpoints/last.ckpt``), or None
    for a fresh run, which an ``out_dir`` already holding checkpoints refuses."""
    folder = checkpoint_dir(out_dir)
    if resume is True:
        path = folder / LAST
        if not path.is_file():
            raise InputError(path, "resume: true, but there is no checkpoint to continue from")
        return _complete(path)
    if isinstance(resume, str):
        if not Path(resume).is_file():
            raise InputError(resume, "checkpoint to resume from does not exist")
        return _complete(Path(resume))
    held = sorted(folder.glob("*.ckpt"), key=lambda p: (p.name != LAST, p.name)) if folder.is_dir() else []
    if held:
        raise InputError(out_dir, f"already holds a training run (checkpoints/{held[0].name}); set resume: true to continue it, "
                                  "or choose another out_dir")
    return None


def _complete(path: Path) -> str:
    """``path`` if it is a whole checkpoint (a zip archive whose every member reads back intact), else a
    one-line error now rather than a traceback once the data has loaded. Lightning copies a checkpoint
    into place from a temporary file, so a kill at that moment can leave it cut short."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        broken = str(exc) or type(exc).__name__
    if broken is not None:
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
        hint = f"; resume from {others[-1]} (resume: {path.parent / others[-1]})" if others else ""
        raise InputError(path, f"is not a complete checkpoint (cut short while it was saved?: {broken}){hint}")
    return str(path)


def check_writable(path: str | Path | None, what: str) -> None:
    """:func:`incdet.io.check_output_path`, with the config key (``what``, e.g. ``export``) named."""
    if path is None:
        return
    try:
        check_output_path(path)
    except InputError as exc:
        raise InputError(exc.path, f"{what}: {exc.problem}") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic where the checkpoint lives.

    Lightning writes a checkpoint to a temporary file in ``$TMPDIR`` and moves it into place: across
    filesystems (``/tmp`` to a cluster's shared disk) that move is a copy, and a kill during it leaves
    a cut-short ``last.ckpt``. This one writes beside the target, fsyncs and renames
    (:func:`incdet.io.atomic_path`). A run killed while it wrote an epoch's checkpoint leaves that
    name's temporary file, and a resumed run writes other epochs' names: each save clears the folder
    of every killed writer's temporary files.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        remove_orphans(Path(path).parent)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def checkpoint_callbacks(out_dir: str | Path, every_n_steps: int | None = None) -> list[ModelCheckpoint]:
    """Keep ``last.ckpt`` (and Lightning's latest epoch checkpoint), overwritten in place: a run folder
    holds one run (see :func:`resume_checkpoint`), so there is never a ``last-v1.ckpt``. ``last.ckpt``
    is written at each epoch's end, and within epochs every ``every_n_steps`` optimizer steps (None:
    every :data:`CHECKPOINT_INTERVAL` of training)."""
    folder = checkpoint_dir(out_dir)
    within = {"every_n_train_steps": every_n_steps} if every_n_steps else {"train_time_interval": CHECKPOINT_INTERVAL}
    return [ModelCheckpoint(dirpath=folder, save_last=True, enable_version_counter=False),
            ModelCheckpoint(dirpath=folder, save_last=True, save_top_k=0, enable_version_counter=False, **within)]


def make_trainer(cfg: Any, callbacks: Sequence[L.Callback] = (), **arguments: Any) -> L.Trainer:
    """The ``lightning.Trainer`` of a training config (regions, MultiBox or backbone): its
    ``max_epochs``, ``out_dir`` (checkpoints, CSV logs), ``deterministic``, ``checkpoint_every_n_steps``,
    ``optim.gradient_clip`` and ``trainer:`` pass-through, plus ``arguments``."""
    out_dir = Path(cfg.out_dir)
    return L.Trainer(
        max_epochs=cfg.max_epochs, default_root_dir=out_dir, logger=CSVLogger(out_dir, name="logs"),
        callbacks=[*checkpoint_callbacks(out_dir, cfg.checkpoint_every_n_steps), *callbacks],
        gradient_clip_val=cfg.optim.gradient_clip, deterministic=cfg.deterministic, plugins=[AtomicCheckpointIO()],
        **arguments, **cfg.trainer,
    )


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule | None = None,
        ckpt_path: str | None = None) -> None:
    """``trainer.fit``, with Ctrl-C raised as KeyboardInterrupt once Lightning has shut down.

    A ``deterministic`` trainer switches torch's process-wide deterministic mode on and leaves it on;
    once training ends the process (a notebook, detection after training) gets torch's default back.
    """
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        torch.use_deterministic_algorithms(False)
    if trainer.interrupted:
        raise KeyboardInterrupt
