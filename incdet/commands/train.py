"""``incdet train regions|multibox|backbone --config FILE``: fit a learned stage from a YAML config;
``incdet train detector``: every stage, from annotations to a model bundle, as one job.

Under DDP Lightning runs this command once per process; only rank 0 reports the export. Ctrl-C
stops training without exporting (exit 130, one line); ``resume: true`` continues the run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

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
    detector = tasks.add_parser(
        "detector", help="the whole detector from annotations, as one resumable job: proposals, backbones, the ensemble "
        "members, MultiBox, val mAP, and a model bundle for incdet detect --model",
        description="Train a detector from a dataset's annotations in one resumable job (rerun the same command after "
        "Ctrl-C or a crash to continue). Writes OUT/bundle, which incdet detect --model and incdet export take.")
    detector.add_argument("--train", required=True, help="training ground truth: VOC annotation folder, COCO JSON or ILSVRC-DET")
    detector.add_argument("--val", required=True, help="validation ground truth, same formats (its classes must be in --train's)")
    detector.add_argument("--train-split", help="image set of a VOC year folder or ILSVRC root given as --train (e.g. trainval)")
    detector.add_argument("--val-split", help="the same for --val (e.g. test, val)")
    detector.add_argument("--out", required=True, help="the job's folder (new, or a job to continue)")
    detector.add_argument("--recipe", default="quick", help="quick, demo, paper, voc (configs/recipes/) or a recipe "
                          "YAML file (default: %(default)s)")
    detector.add_argument("--init-googlenet", metavar="FILE", help="ImageNet weights for the GoogLeNet members (torchvision "
                          "googlenet state dict, loaded strictly) instead of pretraining a backbone on the crops")
    detector.add_argument("--init-inception-v3", metavar="FILE", help="the same for the Inception-v3 members (torchvision inception_v3)")
    detector.add_argument("--device", default="auto", help="where the val evaluation runs (training: the recipe's trainer keys)")
    detector.set_defaults(func=run_detector)


def _show_library_messages() -> None:
    """incdet's own log lines (skipped images, loaded layers, proposal progress) on stderr, bare;
    other libraries' from warnings up. Does nothing where logging is already configured."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    logging.getLogger("incdet").setLevel(logging.INFO)


def _report(path: object, what: str, out_dir: str) -> None:
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # DDP runs this command once per process
        print(f"{what} written to {path} (Lightning checkpoints and CSV logs in {out_dir})")


def _train(args: argparse.Namespace, schema: type, train: Callable[[Any], object], what: str) -> int:
    _show_library_messages()
    cfg = load_config(args.config, schema)
    _report(train(cfg), what, cfg.out_dir)
    return 0


def run_regions(args: argparse.Namespace) -> int:
    from incdet.train.regions.config import RegionTrainConfig
    from incdet.train.regions.train import train_regions

    return _train(args, RegionTrainConfig, train_regions, "region classifier")


def run_multibox(args: argparse.Namespace) -> int:
    from incdet.train.multibox.config import MultiBoxTrainConfig
    from incdet.train.multibox.train import train_multibox

    return _train(args, MultiBoxTrainConfig, train_multibox, "MultiBox network")


def run_backbone(args: argparse.Namespace) -> int:
    from incdet.train.backbone.config import BackboneTrainConfig
    from incdet.train.backbone.train import train_backbone

    return _train(args, BackboneTrainConfig, train_backbone, "backbone")


def run_detector(args: argparse.Namespace) -> int:
    from incdet.train.detector import DetectorJob

    _show_library_messages()
    job = DetectorJob(args.train, args.val, args.out, args.recipe,
                      init={"googlenet": args.init_googlenet, "inception_v3": args.init_inception_v3}, device=args.device,
                      splits=(args.train_split, args.val_split))
    bundle = job.run()
    for name, value in bundle.results.get("val", {}).items():
        print(f"val {name}: {value}")
    print(f"detector written to {bundle.folder}: incdet detect IMAGES --model {bundle.folder}")
    return 0
