"""``incdet train detector``: GoogLeNet's DET recipe as one resumable job, from annotations to a bundle.

A *recipe* (``configs/recipes/*.yaml``) holds, per stage, the keys of that stage's own training
config; the job fills in what ties the stages together (data, proposal stores, which backbone a
member starts from, where each run lives) and runs them in order::

    OUT/job.json                 what the job was started with, and the steps done so far
    OUT/recipe.yaml              the recipe as run
    OUT/proposals/{train,val}.db selective search, once, shared by every member
    OUT/crops/{train,val}/       ground-truth crops, when a backbone is pretrained on them
    OUT/steps/<step>/            one Lightning run per training step (its checkpoints resume it)
    OUT/bundle/                  the detector (:mod:`incdet.bundle`): members, MultiBox, settings, val results

Rerunning the same command after Ctrl-C or a kill continues at the step it stopped in, and within
a training step from its last checkpoint; a finished step is never redone. Everything the job can
check is checked before the first step: the recipe's keys, that the val split has no class the
train split lacks, and that each init file loads into its architecture.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from incdet.bundle import Bundle, write_bundle
from incdet.classify.classifier_file import RegionClassifierSpec
from incdet.data.dataset import load_dataset
from incdet.data.records import Dataset
from incdet.engine import process
from incdet.engine.jobs import propose_folder
from incdet.engine.plan import plan_groups
from incdet.engine.steps import DetectStep, Loader
from incdet.errors import InputError
from incdet.evaluate import evaluate_detections
from incdet.io import atomic_path, file_sha256
from incdet.multibox.proposer import Proposer
from incdet.pipeline import Pipeline
from incdet.postprocess.coco_results import to_coco_records
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore
from incdet.structures import ImageRecord
from incdet.train.backbone.config import BackboneTrainConfig
from incdet.train.backbone.crops import write_crops
from incdet.train.config import config_from, load_config
from incdet.train.multibox.config import MultiBoxTrainConfig
from incdet.train.regions.config import RegionTrainConfig
from incdet.train.regions.pretrained import initialise_from

log = logging.getLogger(__name__)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"
JOB_FORMAT = "incdet.detector_job.v1"


@dataclass
class Recipe:
    """A recipe file: ``proposals`` (selective-search settings), ``backbones`` (architecture ->
    ``incdet train backbone`` keys), ``members`` (each a ``name`` and ``incdet train regions`` keys)
    and ``multibox`` (``incdet train multibox`` keys, or null for selective search alone)."""

    proposals: SearchSettings = field(default_factory=SearchSettings)
    backbones: dict[str, Any] = field(default_factory=dict)
    members: list[Any] = field(default_factory=list)
    multibox: dict[str, Any] | None = None


def recipe_path(name: str | Path) -> Path:
    """A recipe file, or the name of a shipped one (``quick``, ``demo``, ``paper``, ``voc``). A file of
    that name wins; a folder does not (``--recipe demo`` beside the ``demo/`` data folder is the recipe)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return path
    shipped = RECIPES / f"{name}.yaml"
    if not shipped.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
        raise InputError(None, f"--recipe {name!r} is neither a file nor a shipped recipe ({known})")
    return shipped


def _set(config: dict[str, Any], dotted: str, value: Any, recipe: Path, where: str) -> None:
    """Set a key the job owns, refusing a recipe that sets it too (the job would silently overrule it)."""
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(recipe, f"{where}{part}: expected a mapping")
    if last in node:
        raise InputError(recipe, f"{where}{dotted} is set by incdet train detector; remove it from the recipe")
    node[last] = value


@dataclass
class Step:
    """One step of the job: its name (``backbone-googlenet``, ``member-googlenet64``, ...) and what runs it."""

    name: str
    run: Callable[[], None]
    what: str


class DetectorJob:
    """The steps of one ``incdet train detector`` run, planned (and everything checked) on construction."""

    def __init__(self, train: str | Path, val: str | Path, out: str | Path, recipe: str | Path = "quick",
                 init: Mapping[str, str | Path] | None = None, device: str = "auto",
                 splits: tuple[str | None, str | None] = (None, None), callbacks: Sequence[L.Callback] = ()) -> None:
        self.out = Path(out)
        self.callbacks = list(callbacks)  # Lightning callbacks given to every training step (e.g. timing)
        self.recipe_file = recipe_path(recipe)
        self.recipe = load_config(self.recipe_file, Recipe)
        self.init = {arch: Path(path) for arch, path in (init or {}).items() if path is not None}
        self.device = device
        self.train_ann, self.val_ann = Path(train), Path(val)
        self.splits = splits  # of a VOC year folder or an ILSVRC root (None: the format's default)
        self.train = load_dataset(self.train_ann, splits[0], purpose="train")
        self._check_classes(load_dataset(self.val_ann, splits[1]))
        self.val = load_dataset(self.val_ann, splits[1], classes=self.train.classes)
        self.inputs = self._inputs()
        self.stores = {"train": self.out / "proposals" / "train.db", "val": self.out / "proposals" / "val.db"}
        self.members: dict[str, RegionTrainConfig] = {}
        for index, entry in enumerate(self.recipe.members):
            name, member = self._member(index, entry)
            if name in self.members:
                raise InputError(self.recipe_file, f"members[{index}].name: {name!r} is used twice")
            self.members[name] = member
        if not self.members:
            raise InputError(self.recipe_file, "members: the recipe names no region classifier")
        self.backbones = {arch: self._backbone(arch) for arch in dict.fromkeys(m.model.arch for m in self.members.values())}
        self.multibox = self._multibox()
        self._check_init_files()

    # -- planning ---------------------------------------------------------------------------
    def _check_classes(self, val: Dataset) -> None:
        extra = sorted({label for ann in val.annotations for label in ann.labels} - set(self.train.classes))
        if extra:
            raise InputError(self.val_ann, f"has class {extra[0]!r} ({len(extra)} in all) that the train split "
                                           f"{self.train_ann} lacks: a detector cannot learn it")

    def _inputs(self) -> dict[str, Any]:
        """What identifies the job: a rerun with other inputs into the same folder is refused."""
        return {"format": JOB_FORMAT, "train": str(self.train_ann.resolve()), "val": str(self.val_ann.resolve()), "splits": list(self.splits),
                "recipe": file_sha256(self.recipe_file),
                "init": {arch: file_sha256(path) for arch, path in sorted(self.init.items())}}

    def _step_dir(self, name: str) -> Path:
        return self.out / "steps" / name

    def _member(self, index: int, entry: Any) -> tuple[str, RegionTrainConfig]:
        where = f"members[{index}]."
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InputError(self.recipe_file, f"{where}name: each member needs a name (e.g. googlenet64)")
        config = copy.deepcopy({k: v for k, v in entry.items() if k != "name"})
        folder = self._step_dir(f"member-{entry['name']}")
        for key, value in {"data.train": str(self.train_ann), "data.val": str(self.val_ann),
                           "data.train_split": self.splits[0], "data.val_split": self.splits[1],
                           "data.proposals": asdict(self.recipe.proposals),
                           "data.train_proposals": str(self.stores["train"]), "data.val_proposals": str(self.stores["val"]),
                           "out_dir": str(folder), "export": str(folder / "region_classifier.pt")}.items():
            _set(config, key, value, self.recipe_file, where)
        return entry["name"], config_from(RegionTrainConfig, config, self.recipe_file, where)

    def _backbone(self, arch: str) -> BackboneTrainConfig | None:
        """The backbone run of ``arch`` (None when an init file replaces it); members start from its export."""
        if arch in self.init:
            export = self.init[arch]
        else:
            entry = self.recipe.backbones.get(arch)
            if not isinstance(entry, dict):
                raise InputError(self.recipe_file, f"backbones.{arch}: a member is a {arch}, so the recipe needs a backbone "
                                                   f"for it (or give --init-{arch.replace('_', '-')} FILE)")
            config, folder, where = copy.deepcopy(entry), self._step_dir(f"backbone-{arch}"), f"backbones.{arch}."
            for key, value in {"data.format": "folder", "data.root": str(self.out / "crops"), "data.train_split": "train",
                               "data.val_split": "val", "out_dir": str(folder), "export": str(folder / "backbone.pt"),
                               "export_state_dict": None}.items():
                _set(config, key, value, self.recipe_file, where)
            backbone = config_from(BackboneTrainConfig, config, self.recipe_file, where)
            if backbone.model.arch != arch:
                raise InputError(self.recipe_file, f"{where}model.arch is {backbone.model.arch!r}, not {arch!r}")
            export = Path(backbone.export)
        for member in self.members.values():
            if member.model.arch == arch:
                member.model.init = str(export)
        return None if arch in self.init else backbone

    def _multibox(self) -> MultiBoxTrainConfig | None:
        if self.recipe.multibox is None:
            return None
        config, folder = copy.deepcopy(self.recipe.multibox), self._step_dir("multibox")
        for key, value in {"data.train": str(self.train_ann), "data.val": str(self.val_ann), "data.train_split": self.splits[0],
                           "data.val_split": self.splits[1], "out_dir": str(folder), "export": str(folder / "multibox.pt")}.items():
            _set(config, key, value, self.recipe_file, "multibox.")
        return config_from(MultiBoxTrainConfig, config, self.recipe_file, "multibox.")

    def _check_init_files(self) -> None:
        """Each init file loads into every member of its architecture (strictly, for a torchvision file)."""
        for arch, path in self.init.items():
            members = [m for m in self.members.values() if m.model.arch == arch]
            if not members:
                raise InputError(path, f"--init-{arch.replace('_', '-')}: no member of the recipe is a {arch}")
            for member in members:
                spec = RegionClassifierSpec(arch=arch, classes=tuple(self.train.classes), input_size=member.model.input_size,
                                            context_pad=member.model.resolved_context_pad, width=member.model.width,
                                            low_res=member.model.low_res, bbox_reg=member.model.bbox_reg)
                initialise_from(spec.build(), path, arch, member.model.width, member.model.low_res)

    # -- running -----------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        from incdet.train.backbone.train import train_backbone
        from incdet.train.multibox.train import train_multibox
        from incdet.train.regions.train import train_regions

        steps = [Step("proposals", self._propose, f"selective search into {self.out / 'proposals'}")]
        pretrain = [arch for arch, backbone in self.backbones.items() if backbone is not None]
        if pretrain:
            steps.append(Step("crops", self._crops, f"ground-truth crops into {self.out / 'crops'}"))
        for arch in pretrain:
            cfg = self.backbones[arch]
            steps.append(Step(f"backbone-{arch}", _resumed(train_backbone, cfg, self.callbacks), f"{arch} backbone on the crops, in {cfg.out_dir}"))
        for name, member in self.members.items():
            steps.append(Step(f"member-{name}", _resumed(train_regions, member, self.callbacks),
                              f"region classifier {name} ({member.model.arch} @ {member.model.input_size} px), in {member.out_dir}"))
        if self.multibox is not None:
            steps.append(Step("multibox", _resumed(train_multibox, self.multibox, self.callbacks), f"MultiBox, in {self.multibox.out_dir}"))
        steps.append(Step("bundle", self._bundle, f"val mAP of each member and the ensemble, bundle into {self.out / 'bundle'}"))
        return steps

    def run(self, report: Callable[[str], None] = print) -> Bundle:
        """Every step not done yet, in order; returns the bundle."""
        done = self._open()
        steps = self.steps()
        for number, step in enumerate(steps, 1):
            if step.name in done:
                report(f"[{number}/{len(steps)}] {step.name}: done")
                continue
            report(f"[{number}/{len(steps)}] {step.name}: {step.what}")
            step.run()
            done.append(step.name)
            self._write_state(done)
        from incdet.bundle import read_bundle

        return read_bundle(self.out / "bundle")

    def _open(self) -> list[str]:
        """The steps done by an earlier run of this job; a folder holding anything else is refused."""
        state = self.out / "job.json"
        if state.is_file():
            recorded = json.loads(state.read_text())
            if recorded.get("inputs") != self.inputs:
                changed = [k for k in self.inputs if recorded.get("inputs", {}).get(k) != self.inputs[k]]
                raise InputError(self.out, f"holds another detector job (its {', '.join(changed) or 'format'} differ); "
                                           "use another --out, or the same inputs to continue it")
            return list(recorded.get("done", []))
        if self.out.exists() and any(self.out.iterdir()):
            raise InputError(self.out, "is not empty and holds no detector job; use a new or empty folder")
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out / "recipe.yaml") as tmp:
            tmp.write_text(self.recipe_file.read_text())
        self._write_state([])
        return []

    def _write_state(self, done: list[str]) -> None:
        with atomic_path(self.out / "job.json") as tmp:
            tmp.write_text(json.dumps({"inputs": self.inputs, "done": done}, indent=1))

    def _records(self, dataset: Dataset) -> list[ImageRecord]:
        return [ImageRecord(dataset.image_path(ann), ann.filename, i) for i, ann in enumerate(dataset.annotations)]

    def _propose(self) -> None:
        for split, dataset in (("train", self.train), ("val", self.val)):
            proposer = Proposer(self.recipe.proposals, device="cpu")
            for message in propose_folder(self._records(dataset), self.stores[split], proposer).messages():
                log.warning("skipped %s", message)

    def _crops(self) -> None:
        for split, dataset in (("train", self.train), ("val", self.val)):
            count = write_crops(dataset, self.out / "crops" / split)
            log.info("%d %s crops", count, split)

    def _bundle(self) -> None:
        members = [Path(m.export) for m in self.members.values()]
        multibox = Path(self.multibox.export) if self.multibox is not None else None
        results = {"val": {}}
        for name, path in zip(self.members, members):
            results["val"][f"member {name}"] = self.evaluate([path], multibox)
        if len(members) > 1:
            results["val"]["ensemble"] = self.evaluate(members, multibox)
        results["val"]["proposal coverage@0.5"] = self._coverage()
        provenance = {"train": str(self.train_ann.resolve()), "val": str(self.val_ann.resolve()), "commit": _commit(),
                      "seeds": {name: m.seed for name, m in self.members.items()}, "init": {a: str(p) for a, p in self.init.items()}}
        write_bundle(self.out / "bundle", members, multibox, search=self.recipe.proposals,
                     recipe=json.loads(json.dumps(asdict(self.recipe))), provenance=provenance, results=results,
                     names=list(self.members))

    def evaluate(self, models: list[Path], multibox: Path | None) -> dict[str, float]:
        """Val mAP@0.5 and @0.7 (ILSVRC rules) of the detector of ``models`` (+ ``multibox``) on the stored val proposals."""
        pipeline = Pipeline(models, multibox, self.recipe.proposals, device=self.device)
        store = ProposalStore(self.stores["val"], readonly=True)
        records = self._records(self.val)
        detections = []
        for results in process(plan_groups(records, 8), Loader(None, store, str(store.path)), DetectStep(pipeline)):
            for result in results:
                if result.error is None:
                    detections += to_coco_records(result.detections, result.image.image_id, result.image.key, pipeline.classes)
        return {f"mAP@{iou}": round(100 * evaluate_detections(self.val.annotations, detections, pipeline.classes, iou).mean_ap, 2)
                for iou in (0.5, 0.7)}

    def _coverage(self) -> float:
        """Share (%) of the val objects that some stored proposal covers at IoU >= 0.5."""
        from torchvision.ops import box_iou

        covered = total = 0
        with ProposalStore(self.stores["val"], readonly=True) as store:
            for ann in self.val.annotations:
                entry = store.entry(ann.filename)
                if entry is None or not len(ann.boxes):
                    total += len(ann.boxes)
                    continue
                iou = box_iou(torch.as_tensor(ann.boxes, dtype=torch.float32), entry.proposals.boxes)
                covered += int((iou.amax(1) >= 0.5).sum()) if iou.numel() else 0
                total += len(ann.boxes)
        return round(100 * covered / max(total, 1), 2)


def _resumed(train: Callable[..., Path], cfg: Any, callbacks: Sequence[L.Callback] = ()) -> Callable[[], None]:
    """Run ``train(cfg, callbacks=...)``, continuing from the run's last checkpoint when an earlier attempt left one."""
    def run() -> None:
        cfg.resume = True if (Path(cfg.out_dir) / "checkpoints" / "last.ckpt").is_file() else None
        train(cfg, callbacks=callbacks)
    return run


def _commit() -> str | None:
    """The incdet commit that trained the bundle (None outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None

