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
  back into KeyboardInterrupt, so the command exits 130 and no half-trained model is exported.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from incdet.errors import InputError
from incdet.io import check_output_path

LAST = "last.ckpt"


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


def checkpoint_callback(out_dir: str | Path) -> ModelCheckpoint:
    """Keep ``last.ckpt`` (and Lightning's latest epoch checkpoint), overwritten in place: a run folder
    holds one run (see :func:`resume_checkpoint`), so there is never a ``last-v1.ckpt``."""
    return ModelCheckpoint(dirpath=checkpoint_dir(out_dir), save_last=True, enable_version_counter=False)


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule | None = None,
        ckpt_path: str | None = None) -> None:
    """``trainer.fit``, with Ctrl-C raised as KeyboardInterrupt once Lightning has shut down."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
