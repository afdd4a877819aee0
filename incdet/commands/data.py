"""``incdet data demo``: write the embedded demo dataset (no download needed)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from incdet.data.demo import (
    CLASSES,
    DEFAULT_COUNTS,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    MANIFEST,
    generate_demo,
)
from incdet.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="datasets: write the demo dataset")
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    demo = actions.add_parser(
        "demo",
        help="write the demo detection dataset made from photos bundled with scikit-image",
        description=f"Write DIR/classes.txt and DIR/{{train,val,test}}/{{images,annotations}} "
        f"({DEFAULT_COUNTS['train']}/{DEFAULT_COUNTS['val']}/{DEFAULT_COUNTS['test']} "
        f"{IMAGE_WIDTH}x{IMAGE_HEIGHT} JPEGs with VOC XML boxes; classes: {', '.join(CLASSES)}). "
        "The same seed always gives byte-identical files.",
    )
    demo.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    demo.add_argument("--benchmark-images", type=int, default=0, metavar="N",
                      help="also write DIR/benchmark/{images,annotations}: N >= 200 held-out images, where one object "
                      "weighs under 0.2 points of mAP (default: none)")
    demo.add_argument("--force", action="store_true",
                      help=f"also write into a non-empty folder without {MANIFEST}; nothing is deleted")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise InputError(None, f"--seed must be >= 0, got {args.seed}")
    if args.benchmark_images and args.benchmark_images < 200:
        raise InputError(None, f"--benchmark-images must be at least 200 (one object under 0.2 points), got {args.benchmark_images}")
    start = time.perf_counter()
    summary = generate_demo(args.out, seed=args.seed, counts={"benchmark": args.benchmark_images}, force=args.force)
    seconds = time.perf_counter() - start
    print(f"wrote the demo dataset to {args.out} (seed {args.seed}, "
          f"{IMAGE_WIDTH}x{IMAGE_HEIGHT} images) in {seconds:.1f} s")
    header = ["split", "images", *CLASSES, "objects"]
    print("  ".join(f"{h:>7}" for h in header))
    for split, counts in summary["splits"].items():
        if not counts["images"] and split == "benchmark":
            continue
        objects = [counts["objects"][c] for c in CLASSES]
        row = [split, counts["images"], *objects, sum(objects)]
        print("  ".join(f"{v:>7}" for v in row))
    return 0
