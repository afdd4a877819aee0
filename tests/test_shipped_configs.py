"""Every config the repository ships loads and validates, so a documented command never fails on its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from incdet.train.backbone.config import BackboneTrainConfig
from incdet.train.config import load_config
from incdet.train.multibox.config import MultiBoxTrainConfig
from incdet.train.regions.config import RegionTrainConfig

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
SCHEMAS = {"backbone": BackboneTrainConfig, "multibox": MultiBoxTrainConfig}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_loads(path: Path) -> None:
    schema = SCHEMAS.get(path.stem.split("_")[0], RegionTrainConfig)
    load_config(path, schema)


def test_the_backbone_variants_differ_from_the_demo_only_where_they_say() -> None:
    demo, seed1, ddp = (load_config(Path(CONFIGS[0].parent / f"{n}.yaml"), BackboneTrainConfig)
                        for n in ("backbone_demo", "backbone_demo_seed1", "backbone_demo_ddp"))
    assert (seed1.seed, seed1.out_dir) == (1, "runs/backbone_demo_seed1") and seed1.model == demo.model
    assert ddp.trainer == {"accelerator": "cpu", "devices": 2, "strategy": "ddp"} and ddp.optim == demo.optim


RECIPES = sorted((CONFIGS[0].parent / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_split(make_demo) -> Path:
    return make_demo(train=2, val=1, test=1)


@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory) -> dict[str, Path]:
    """Untrained full-size networks in torchvision's state-dict format, as the ImageNet downloads are."""
    import torch

    from incdet.nets.factory import build_classifier

    folder = tmp_path_factory.mktemp("imagenet")
    files = {arch: folder / f"{arch}.pth" for arch in ("googlenet", "inception_v3")}
    for arch, path in files.items():
        torch.save(build_classifier(arch, 1000, width=1.0).state_dict(), path)
    return files


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipe_plans_every_step(path: Path, tiny_split: Path, tmp_path: Path, imagenet_files) -> None:
    """Each recipe's stage configs validate, and the job plans its steps (the full-size ones from
    ImageNet-format init files)."""
    from incdet.train.detector import DetectorJob

    init = imagenet_files if path.stem in ("paper", "voc") else {}
    job = DetectorJob(tiny_split / "train" / "annotations", tiny_split / "val" / "annotations", tmp_path / "out", path, init)
    names = [step.name for step in job.steps()]
    assert names[0] == "proposals" and names[-1] == "bundle" and sum(n.startswith("member-") for n in names) == len(job.members)
    if init:  # ImageNet weights replace the backbones: no crops, no backbone step
        assert len(job.members) == 6 and not any(n.startswith(("crops", "backbone-")) for n in names)
        assert {m.model.input_size for m in job.members.values()} == {224, 299}
    assert not (tmp_path / "out").exists()  # planning writes nothing
