"""The schema of ``incdet train regions`` configs (see configs/demo.yaml for a commented example)."""

from __future__ import annotations

from dataclasses import dataclass, field

from incdet.nets.factory import ARCHS, min_input_size
from incdet.proposals.settings import SearchSettings
from incdet.regions.warp import default_context_pad
from incdet.train.config import RunConfig, check_run, require_positive
from incdet.train.optim import OptimConfig
from incdet.train.regions.pretrained import trunk_layers


@dataclass
class RegionDataConfig:
    """Ground truth in any format ``load_dataset`` reads: a VOC annotation folder, an ILSVRC-DET
    devkit root (with its ``*_split``) or a COCO instances JSON.

    Proposals come from a proposal store per split (``train_proposals`` / ``val_proposals``,
    default ``<out_dir>/proposals/<train|val>.db``); images it lacks (or holds stale boxes for) are
    searched with the ``proposals`` settings before training starts, on one process only. A store
    made by ``incdet propose`` with the same settings can be given instead.

    Each step sees ``images_per_batch`` images x up to ``regions_per_image`` regions,
    ``fg_fraction`` of them foreground when the image has enough (R-CNN: 32 of 128). Fast R-CNN
    groups 2 x 64 because its regions share one convolution pass per image; warped regions share
    nothing, and with batch norm many images of few regions each train better (docs/training.md).
    """

    train: str | None = None
    val: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    classes: str | None = None
    proposals: SearchSettings = field(default_factory=SearchSettings)
    train_proposals: str | None = None
    val_proposals: str | None = None
    proposal_workers: int | None = None  # selective-search processes; None: one per CPU
    fg_iou: float = 0.5  # R-CNN fine-tuning: IoU >= 0.5 with a ground truth is that class
    bbox_iou: float = 0.6  # R-CNN appendix C: regress regions with IoU >= 0.6 to their ground truth
    fg_fraction: float = 0.25
    images_per_batch: int = 16  # per DDP rank
    regions_per_image: int = 8
    num_workers: int = 2  # DataLoader processes decoding images and sampling regions


@dataclass
class RegionModelConfig:
    """``init``: start from a backbone file (``incdet train backbone``'s export) or a torchvision
    ``googlenet`` / ``inception_v3`` state dict file, of the same arch, width and stem; the
    classifier is replaced by one with C + 1 outputs. ``freeze_until``: keep that layer and every
    layer before it fixed (weights and batch-norm statistics), e.g. ``conv3`` or ``inception3b``
    (GoogLeNet), ``Conv2d_4a_3x3`` or ``Mixed_5d`` (Inception-v3)."""

    arch: str = "googlenet"
    width: float = 1.0
    low_res: bool = False
    input_size: int = 224
    context_pad: int | None = None
    init: str | None = None
    freeze_until: str | None = None
    bbox_reg: bool = False  # Fast R-CNN's class-specific box regressor, trained jointly (smooth L1)
    bbox_loss_weight: float = 1.0

    @property
    def resolved_context_pad(self) -> int:
        return default_context_pad(self.input_size) if self.context_pad is None else self.context_pad


@dataclass
class RegionTrainConfig(RunConfig):
    data: RegionDataConfig = field(default_factory=RegionDataConfig)
    model: RegionModelConfig = field(default_factory=RegionModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_epochs: int = 10
    seed: int = 0
    torch_threads: int | None = None  # intra-op threads per process; 1 is fastest on a busy CPU, None leaves torch's default
    out_dir: str = "runs/regions"
    export: str = "runs/regions/region_classifier.pt"

    def validate(self) -> None:
        self.optim.validate()
        data, model = self.data, self.model
        if not 0 < data.fg_fraction < 1:
            raise ValueError(f"data.fg_fraction must be in (0, 1), got {data.fg_fraction}")
        for name in ("fg_iou", "bbox_iou"):
            if not 0 < getattr(data, name) <= 1:
                raise ValueError(f"data.{name} must be in (0, 1], got {getattr(data, name)}")
        if data.bbox_iou < data.fg_iou:
            raise ValueError(f"data.bbox_iou {data.bbox_iou} is below data.fg_iou {data.fg_iou}: only foreground regions are regressed")
        if data.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {data.num_workers}")
        if model.arch not in ARCHS:
            raise ValueError(f"model.arch must be one of {', '.join(ARCHS)}, got {model.arch!r}")
        if model.width <= 0:
            raise ValueError(f"model.width must be positive, got {model.width}")
        if model.input_size < min_input_size(model.arch, model.low_res):
            raise ValueError(f"model.input_size {model.input_size} is below the {min_input_size(model.arch, model.low_res)} px {model.arch} accepts")
        if model.input_size <= 2 * model.resolved_context_pad or model.resolved_context_pad < 0:
            raise ValueError(f"model.context_pad {model.resolved_context_pad} leaves no room in a {model.input_size} px crop")
        if model.freeze_until is not None and not model.init:
            raise ValueError("model.freeze_until needs model.init: frozen layers keep the weights they start with")
        if model.freeze_until is not None and model.freeze_until not in trunk_layers(model.arch):
            raise ValueError(f"model.freeze_until: {model.arch} has no layer {model.freeze_until!r} (layers: {', '.join(trunk_layers(model.arch))})")
        if not model.bbox_loss_weight >= 0:
            raise ValueError(f"model.bbox_loss_weight must be >= 0, got {model.bbox_loss_weight}")
        require_positive({"data.images_per_batch": data.images_per_batch, "data.regions_per_image": data.regions_per_image,
                          "data.proposal_workers": data.proposal_workers or 1, "max_epochs": self.max_epochs,
                          "torch_threads": self.torch_threads or 1})
        check_run(self)
        if not data.train:
            raise ValueError("data.train is required: the training ground truth (e.g. demo/train/annotations)")
