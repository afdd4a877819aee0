"""``incdet train regions|multibox|backbone --config FILE``: fit a learned stage from a YAML config.

Under DDP Lightning runs this command once per process; only rank 0 reports the export. Ctrl-C
stops training without exporting (exit 130, one line); ``resume: true`` continues the run.
"""

from __future__ import annotations

import argparse
import logging
import sys

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


def _show_library_messages() -> None:
    """incdet's own log lines (skipped images, loaded layers, proposal progress) on stderr, bare;
    other libraries' from warnings up. Does nothing where logging is already configured."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    logging.getLogger("incdet").setLevel(logging.INFO)


def _report(path: object, what: str, out_dir: str) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # DDP runs this command once per process
        print(f"{what} written to {path} (Lightning checkpoints and CSV logs in {out_dir})")


def run_regions(args: argparse.Namespace) -> int:
    from incdet.train.regions.config import RegionTrainConfig
    from incdet.train.regions.train import train_regions

    _show_library_messages()
    cfg = load_config(args.config, RegionTrainConfig)
    _report(train_regions(cfg), "region classifier", cfg.out_dir)
    return 0


def run_multibox(args: argparse.Namespace) -> int:
    from incdet.train.multibox.config import MultiBoxTrainConfig
    from incdet.train.multibox.train import train_multibox

    _show_library_messages()
    cfg = load_config(args.config, MultiBoxTrainConfig)
    _report(train_multibox(cfg), "MultiBox network", cfg.out_dir)
    return 0


def run_backbone(args: argparse.Namespace) -> int:
    from incdet.train.backbone.config import BackboneTrainConfig
    from incdet.train.backbone.train import train_backbone

    _show_library_messages()
    cfg = load_config(args.config, BackboneTrainConfig)
    _report(train_backbone(cfg), "backbone", cfg.out_dir)
    return 0
