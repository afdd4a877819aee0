"""``incdet eval-cls``: top-1 / top-5 of trained backbones with 1, 10 and 144 crops and their ensemble."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Classification accuracy as the GoogLeNet paper's table 3 breaks it down: each backbone with 1
crop (centre, 87.5%), 10 crops (corners + centre, mirrored) and 144 crops (4 scales x 3 squares
x 6 crops x 2 mirrors), and the ensemble of all given backbones (softmax averaged over crops,
then over models). Cost = forward passes per image.

--format digits evaluates on the small real dataset that ships with scikit-learn (--split val);
folder reads DATA/<split>/<class>/<image>; ilsvrc reads an ILSVRC-CLS root (see docs/backbone.md).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval-cls", help="top-1/top-5 of classification backbones with 1/10/144 crops and ensembles",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", nargs="+", required=True, type=Path, help="backbone files from `incdet train backbone`")
    parser.add_argument("--format", choices=("folder", "ilsvrc", "digits"), default="ilsvrc", help="dataset format (default: ilsvrc)")
    parser.add_argument("--data", type=Path, help="dataset root (not needed for digits)")
    parser.add_argument("--split", default="val", help="split (default: val)")
    parser.add_argument("--crops", nargs="+", type=int, choices=(1, 10, 144), default=[1, 10, 144], help="crop schemes (default: all)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images (a quick look)")
    parser.add_argument("--batch-size", type=int, default=256, help="crops per forward pass (default: %(default)s)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 is fastest on a busy CPU)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from incdet.data.classification import load_classification
    from incdet.devices import resolve_device
    from incdet.errors import InputError
    from incdet.io import write_json
    from incdet.nets.backbone_file import load_backbone
    from incdet.train.backbone.eval import evaluate_backbones

    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise InputError(None, "--batch-size and --limit must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    backbones = [(str(path), *load_backbone(path, device)) for path in args.backbone]
    data = load_classification(args.format, args.data, args.split, classes=backbones[0][1].classes)
    for item in data.skipped.items:
        print(f"skipped {item.message}", file=sys.stderr)
    if args.limit is not None:
        data = data.head(args.limit)
    with tqdm(total=len(data), desc="eval-cls", unit="img") as bar:
        rows = evaluate_backbones(backbones, data, sorted(set(args.crops)), batch_crops=args.batch_size,
                                  num_workers=args.num_workers, device=device, progress=bar.update)
    if not rows[0].images:
        print(f"no image of {data.source} could be read")
        return 1
    width = max(len(r.name) for r in rows)
    print(f"{data.source}: {rows[0].images} images, {len(data.classes)} classes (chance top-1 {1 / len(data.classes):.3f})")
    print(f"{'model':<{width}}  {'models':>6} {'crops':>5} {'cost':>5}  {'top-1':>6} {'top-5':>6} {'top-5 err':>9}")
    for r in rows:
        print(f"{r.name:<{width}}  {r.models:>6} {r.crops:>5} {r.cost:>5}  {r.top1:>6.2%} {r.top5:>6.2%} {1 - r.top5:>9.2%}")
    if args.json:
        write_json(args.json, {"dataset": data.source, "images": rows[0].images, "classes": len(data.classes),
                               "rows": [r.to_json() for r in rows]})
    return 0
