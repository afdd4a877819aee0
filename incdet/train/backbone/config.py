"""The schema of ``incdet train backbone`` configs (configs/backbone_v3.yaml, backbone_v1.yaml, backbone_demo.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from incdet.data.classification import FORMATS
from incdet.nets.factory import ARCHS, min_input_size
from incdet.train.config import RunConfig, check_run, require_positive
from incdet.train.optim import OptimConfig

AVERAGING = ("ema", "polyak", "none")


@dataclass
class BackboneDataConfig:
    """``format``: folder (``root/<split>/<class>/*``), ilsvrc (an ILSVRC-CLS root) or digits (shipped)."""

    format: str = "ilsvrc"
    root: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    batch_size: int = 32  # per device: the v3 paper's 32 per replica
    num_workers: int = 4


@dataclass
class AugmentConfig:
    """GoogLeNet paper section 6: crops of 8%-100% of the area, aspect 3/4-4/3, photometric
    distortions (Howard's brightness/contrast/colour in random order) and a random one of
    four interpolations; plus mirroring."""

    min_area: float = 0.08
    max_area: float = 1.0
    min_aspect: float = 0.75
    max_aspect: float = 4.0 / 3.0
    random_interpolation: bool = True
    hflip: bool = True
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0


@dataclass
class BackboneModelConfig:
    arch: str = "inception_v3"
    width: float = 1.0
    low_res: bool = False
    input_size: int = 299
    aux_logits: bool = True
    aux_weight: float = 0.4  # v1 paper: 0.3 per side head; v3 paper states none (TF-slim used 0.4)
    dropout: float | None = None  # before the main classifier; None: the architecture's default
    pretrained: str | None = None  # a torchvision state dict file to start from (classifiers re-initialised if shapes differ)


@dataclass
class BackboneTrainConfig(RunConfig):
    data: BackboneDataConfig = field(default_factory=BackboneDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: BackboneModelConfig = field(default_factory=BackboneModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Evaluated and exported weights: "ema" (v3: running average with optim.ema_decay),
    # "polyak" (v1: the plain mean of the weights since optim.ema_start_epoch) or "none".
    averaging: str = "ema"
    max_epochs: int = 100
    seed: int = 0
    torch_threads: int | None = None  # intra-op threads; 1 is fastest on a busy CPU, None leaves torch's default
    out_dir: str = "runs/backbone"
    export: str = "runs/backbone/backbone.pt"  # self-describing file for `incdet eval-cls`
    export_state_dict: str | None = "runs/backbone/backbone_state_dict.pt"  # torchvision-style, for load_backbone_weights

    def validate(self) -> None:
        self.optim.validate()
        data, aug, model = self.data, self.augment, self.model
        if data.format not in FORMATS:
            raise ValueError(f"data.format must be one of {', '.join(FORMATS)}, got {data.format!r}")
        if data.format != "digits" and not data.root:
            raise ValueError(f"data.root is required for the {data.format} format")
        if model.arch not in ARCHS:
            raise ValueError(f"model.arch must be one of {', '.join(ARCHS)}, got {model.arch!r}")
        smallest = min_input_size(model.arch, model.low_res)
        if model.input_size < smallest:
            raise ValueError(f"model.input_size {model.input_size} is below the {model.arch}{' low-res' if model.low_res else ''} minimum {smallest}")
        if model.width <= 0:
            raise ValueError(f"model.width must be positive, got {model.width}")
        if model.dropout is not None and not 0 <= model.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {model.dropout}")
        if model.aux_weight < 0:
            raise ValueError(f"model.aux_weight must be >= 0, got {model.aux_weight}")
        if not 0 < aug.min_area <= aug.max_area <= 1:
            raise ValueError(f"augment areas need 0 < min_area <= max_area <= 1, got {aug.min_area}, {aug.max_area}")
        if not 0 < aug.min_aspect <= aug.max_aspect:
            raise ValueError(f"augment aspects need 0 < min_aspect <= max_aspect, got {aug.min_aspect}, {aug.max_aspect}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(aug, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(aug, name)}")
        if not 0 <= aug.hue <= 0.5:
            raise ValueError(f"augment.hue must be in [0, 0.5], got {aug.hue}")
        if self.averaging not in AVERAGING:
            raise ValueError(f"averaging must be one of {', '.join(AVERAGING)}, got {self.averaging!r}")
        if self.averaging == "ema" and self.optim.ema_decay is None:
            raise ValueError("averaging: ema needs optim.ema_decay (e.g. 0.9999)")
        require_positive({"data.batch_size": data.batch_size, "max_epochs": self.max_epochs, "torch_threads": self.torch_threads or 1})
        check_run(self)
        if data.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {data.num_workers}")
