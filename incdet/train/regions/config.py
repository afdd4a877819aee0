"""The schema of ``incdet train regions`` configs (see configs/demo.yaml for a commented example)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incdet.regions.warp import default_context_pad
from incdet.train.config import check_trainer_passthrough, require_positive
from incdet.train.optim import OptimConfig


@dataclass
class RegionDataConfig:
    """Ground truth in any format ``load_dataset`` reads: a VOC annotation folder, an
    ILSVRC-DET devkit root (with its ``*_split``) or a COCO instances JSON."""

    train: str = "demo/train/annotations"
    val: str | None = "demo/val/annotations"
    train_split: str | None = None
    val_split: str | None = None
    classes: str | None = None
    proposal_cache: str | None = None  # default: <out_dir>/proposals
    superpixel_scale: float = 2.0
    fg_iou: float = 0.5
    fg_fraction: float = 0.25
    batch_size: int = 128
    batches_per_epoch: int = 100
    num_workers: int = 0


@dataclass
class RegionModelConfig:
    arch: str = "googlenet"
    width: float = 1.0
    low_res: bool = False
    input_size: int = 224
    context_pad: int | None = None

    @property
    def resolved_context_pad(self) -> int:
        return default_context_pad(self.input_size) if self.context_pad is None else self.context_pad


@dataclass
class RegionTrainConfig:
    data: RegionDataConfig = field(default_factory=RegionDataConfig)
    model: RegionModelConfig = field(default_factory=RegionModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_epochs: int = 10
    seed: int = 0
    out_dir: str = "runs/regions"
    export: str = "runs/regions/region_classifier.pt"
    trainer: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        self.optim.validate()
        if not 0 < self.data.fg_fraction < 1:
            raise ValueError(f"data.fg_fraction must be in (0, 1), got {self.data.fg_fraction}")
        if not 0 < self.data.fg_iou <= 1:
            raise ValueError(f"data.fg_iou must be in (0, 1], got {self.data.fg_iou}")
        if self.model.input_size <= 2 * self.model.resolved_context_pad:
            raise ValueError(f"model.context_pad {self.model.resolved_context_pad} leaves no room in a {self.model.input_size} px crop")
        require_positive({"data.batch_size": self.data.batch_size, "data.batches_per_epoch": self.data.batches_per_epoch, "max_epochs": self.max_epochs})
        check_trainer_passthrough(self.trainer)
