"""The schema of ``incdet train multibox`` configs (see configs/multibox_demo.yaml for a commented example)."""

from __future__ import annotations

from dataclasses import dataclass, field

from incdet.multibox.multibox_file import MultiBoxSpec
from incdet.train.config import RunConfig, check_run, require_positive
from incdet.train.optim import OptimConfig


@dataclass
class MultiBoxDataConfig:
    """Ground truth in any format ``load_dataset`` reads: a VOC annotation folder, an ILSVRC-DET
    devkit root (with its ``*_split``) or a COCO instances JSON; class labels are not used."""

    train: str | None = None
    val: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    batch_size: int = 16
    flip: bool = True
    num_workers: int = 0


@dataclass
class MultiBoxModelConfig:
    num_priors: int = 200
    input_size: int = 160
    width: float = 0.25
    head_channels: int = 64
    hidden: int = 128
    dropout: float = 0.3

    def spec(self) -> MultiBoxSpec:
        return MultiBoxSpec(self.num_priors, self.input_size, self.width, self.head_channels, self.hidden)


@dataclass
class MultiBoxTrainConfig(RunConfig):
    data: MultiBoxDataConfig = field(default_factory=MultiBoxDataConfig)
    model: MultiBoxModelConfig = field(default_factory=MultiBoxModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    alpha: float = 0.3
    val_top_n: int = 10
    init_checkpoint: str | None = None
    max_epochs: int = 30
    seed: int = 0
    out_dir: str = "runs/multibox"
    export: str = "runs/multibox/multibox.pt"

    def validate(self) -> None:
        self.optim.validate()
        require_positive({
            "data.batch_size": self.data.batch_size, "model.num_priors": self.model.num_priors,
            "model.head_channels": self.model.head_channels, "model.hidden": self.model.hidden,
            "val_top_n": self.val_top_n, "max_epochs": self.max_epochs,
        })
        check_run(self)
        if self.model.input_size < 32:
            raise ValueError(f"model.input_size must be at least 32 (GoogLeNet's total stride), got {self.model.input_size}")
        if self.model.width <= 0:
            raise ValueError(f"model.width must be positive, got {self.model.width}")
        if not 0 <= self.model.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.model.dropout}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if self.data.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.data.num_workers}")
        if not self.data.train:
            raise ValueError("data.train is required: the training ground truth (e.g. demo/train/annotations)")
