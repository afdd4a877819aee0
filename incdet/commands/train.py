"""``incdet train regions|multibox|backbone --config FILE``: fit a learned stage from a YAML config."""

from __future__ import annotations

import argparse

from incdet.train.config import load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a learned stage (Lightning) from a YAML config")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    regions = tasks.add_parser("regions", help="R-CNN style region classifier (classes + background)")
    regions.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    regions.set_defaults(func=run_regions)
    multibox = tasks.add_parser("multibox", help="MultiBox proposal network (priors clustered from the training boxes)")
    multibox.add_argument("--config", required=True, help="YAML config, e.g. configs/multibox_demo.yaml")
    multibox.set_defaults(func=run_multibox)
    backbone = tasks.add_parser("backbone", help="Inception classification backbone (GoogLeNet / Inception-v3 recipes)")
    backbone.add_argument("--config", required=True, help="YAML config, e.g. configs/backbone_demo.yaml")
    backbone.set_defaults(func=run_backbone)


def run_regions(args: argparse.Namespace) -> int:
    from incdet.train.regions.config import RegionTrainConfig
    from incdet.train.regions.train import train_regions

    cfg = load_config(args.config, RegionTrainConfig)
    path = train_regions(cfg)
    print(f"region classifier written to {path} (Lightning checkpoints and CSV logs in {cfg.out_dir})")
    return 0


def run_multibox(args: argparse.Namespace) -> int:
    from incdet.train.multibox.config import MultiBoxTrainConfig
    from incdet.train.multibox.train import train_multibox

    cfg = load_config(args.config, MultiBoxTrainConfig)
    path = train_multibox(cfg)
    print(f"MultiBox network written to {path} (Lightning checkpoints and CSV logs in {cfg.out_dir})")
    return 0


def run_backbone(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities import rank_zero_only

    from incdet.train.backbone.config import BackboneTrainConfig
    from incdet.train.backbone.train import train_backbone

    cfg = load_config(args.config, BackboneTrainConfig)
    path = train_backbone(cfg)
    if rank_zero_only.rank == 0:  # DDP runs this command once per process
        print(f"backbone written to {path} (Lightning checkpoints and CSV logs in {cfg.out_dir})")
    return 0
