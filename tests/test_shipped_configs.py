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
