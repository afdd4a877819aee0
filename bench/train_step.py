"""Training images/s of incdet's Lightning backbone trainer against plain torchvision + a hand-written loop.

    python bench/train_step.py [--arch googlenet inception_v3] [--width 1] [--low-res] [--input-size N]
                               [--batch-size 16] [--steps 8] [--warmup 2] [--rounds 3] [--threads 1] [--device cpu]

Three ways to run the same training step (v3 recipe: forward with side heads, label-smoothed
loss plus 0.4 x side loss, backward, gradient clipping at 2.0, RMSProp step) on the same
in-memory batches from the same DataLoader:

* ``torchvision loop``: ``torchvision.models.<arch>`` and a minimal hand-written loop;
* ``incdet loop``: incdet's model (same layers, width/low-res options) in the same loop;
* ``incdet Lightning``: ``BackboneModule`` run by the trainer ``incdet train backbone`` builds
  (``backbone_trainer``: checkpoint callback, CSV logger, gradient clipping; no progress bar).

Only steps after the warm-up are timed, from the end of one step to the end of the last, so
data fetching and every Lightning hook in between are included. The variants take turns for
``--rounds`` rounds and the best round of each is reported (the machine may be shared).
Lightning's overhead is its images/s relative to incdet's loop on the same model.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from incdet.nets.backbone_file import BackboneSpec
from incdet.nets.factory import build_classifier, default_input_size
from incdet.train.backbone.config import (
    BackboneDataConfig,
    BackboneModelConfig,
    BackboneTrainConfig,
)
from incdet.train.backbone.module import BackboneModule
from incdet.train.backbone.train import backbone_trainer
from incdet.train.optim import OptimConfig, make_optimizer

AUX_WEIGHT = 0.4
NUM_CLASSES = 1000


class Repeat(Dataset):
    """``length`` samples cycling over one stored batch: real collation, no decoding."""

    def __init__(self, images: Tensor, labels: Tensor, length: int) -> None:
        self.images, self.labels, self.length = images, labels, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index % len(self.images)], self.labels[index % len(self.labels)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_loop(model: nn.Module, loader: DataLoader, optim: OptimConfig, warmup: int, device: torch.device) -> float:
    """The minimal loop: images/s over the steps after ``warmup``."""
    model.to(device).train()
    optimizer = make_optimizer(model.parameters(), optim)
    start, seen = 0.0, 0
    for step, (images, labels) in enumerate(loader):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits, *aux = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=optim.label_smoothing)
        for side in aux:
            loss = loss + AUX_WEIGHT * F.cross_entropy(side, labels, label_smoothing=optim.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.gradient_clip)
        optimizer.step()
        if step == warmup - 1:
            sync(device)
            start = time.perf_counter()
        elif step >= warmup:
            seen += len(images)
    sync(device)
    return seen / (time.perf_counter() - start)


class StepTimer(L.Callback):
    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start, self.end, self.seen = 0.0, 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(self.device)
        if batch_idx == self.warmup - 1:
            self.start = time.perf_counter()
        elif batch_idx >= self.warmup:
            self.seen += len(batch[0])
            self.end = time.perf_counter()


def lightning_run(module: BackboneModule, loader: DataLoader, cfg: BackboneTrainConfig, warmup: int, device: torch.device) -> float:
    timer = StepTimer(warmup, device)
    trainer, _ = backbone_trainer(cfg, [timer])
    trainer.fit(module, train_dataloaders=loader)
    return timer.seen / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["googlenet", "inception_v3"], choices=["googlenet", "inception_v3"])
    parser.add_argument("--width", type=float, default=1.0, help="incdet width multiplier (torchvision only has 1; other widths skip it)")
    parser.add_argument("--low-res", action="store_true", help="incdet's low-resolution stem (skips torchvision)")
    parser.add_argument("--input-size", type=int, help="default: the architecture's design size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's hints about tiny runs would bury the table
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    optim = OptimConfig(ema_decay=None)  # v3 recipe: RMSProp 0.045/0.9/1.0, smoothing 0.1, clipping 2.0
    steps = args.warmup + args.steps
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} timed steps, best of {args.rounds} rounds")
    print(f"{'arch':<13} {'width':>5} {'input':>5} {'torchvision loop':>17} {'incdet loop':>12} {'incdet Lightning':>17} {'Lightning vs loop':>18}")
    for arch in args.arch:
        size = args.input_size or default_input_size(arch, args.low_res)
        torch.manual_seed(0)
        images, labels = torch.randn(args.batch_size, 3, size, size), torch.randint(0, NUM_CLASSES, (args.batch_size,))
        loader = DataLoader(Repeat(images, labels, steps * args.batch_size), batch_size=args.batch_size)
        models: dict[str, nn.Module] = {"incdet loop": build_classifier(arch, NUM_CLASSES, width=args.width, low_res=args.low_res, aux_logits=True)}
        if args.width == 1.0 and not args.low_res:
            reference = getattr(torchvision.models, arch)(weights=None, aux_logits=True, init_weights=True, num_classes=NUM_CLASSES)
            models = {"torchvision loop": reference, **models}
        spec = BackboneSpec(arch, tuple(str(k) for k in range(NUM_CLASSES)), size, width=args.width, low_res=args.low_res)
        module = BackboneModule(spec, optim, aux_logits=True, aux_weight=AUX_WEIGHT)
        best: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as out:
            cfg = BackboneTrainConfig(
                data=BackboneDataConfig(format="digits", batch_size=args.batch_size, val_split=None),
                model=BackboneModelConfig(arch=arch, width=args.width, low_res=args.low_res, input_size=size),
                optim=optim, averaging="none", max_epochs=1, out_dir=str(Path(out)),
                trainer={"accelerator": "gpu" if device.type == "cuda" else "cpu", "devices": 1, "max_steps": steps,
                         "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0},
            )
            for _ in range(args.rounds):
                for name, model in models.items():
                    best[name] = max(best.get(name, 0.0), hand_loop(model, loader, optim, args.warmup, device))
                best["incdet Lightning"] = max(best.get("incdet Lightning", 0.0), lightning_run(module, loader, cfg, args.warmup, device))
        ratio = best["incdet Lightning"] / best["incdet loop"]
        tv = f"{best['torchvision loop']:>11.1f} img/s" if "torchvision loop" in best else f"{'-':>17}"
        print(f"{arch:<13} {args.width:>5g} {size:>5} {tv} {best['incdet loop']:>6.1f} img/s {best['incdet Lightning']:>11.1f} img/s {ratio - 1:>+17.1%}")


if __name__ == "__main__":
    main()
