"""``incdet models``: parameters and multiply-adds of the region-classifier architectures.

Helps pick a classifier for a compute budget: the GoogLeNet paper designed for 1.5G
multiply-adds, Inception-v3 for about 5G; widths below 1 and the low-resolution stem
trade accuracy for cost.
"""

from __future__ import annotations

import argparse

from incdet.errors import InputError
from incdet.nets import ARCH_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="table of parameters and multiply-adds of the classifier architectures",
        description="Parameters exclude the training-only side heads; multiply-adds are one eval forward pass on one image.",
    )
    parser.add_argument("--arch", nargs="+", choices=ARCH_NAMES, default=list(ARCH_NAMES), help="architectures (default: all)")
    parser.add_argument("--width", nargs="+", type=float, default=[1.0, 0.5, 0.25], help="width multipliers (default: %(default)s)")
    parser.add_argument("--input-size", type=int, help="input side in pixels (default: each variant's design size, 224/299, low-res 56/79)")
    parser.add_argument(
        "--low-res", action=argparse.BooleanOptionalAction, default=None,
        help="only the low-resolution stem variants (--no-low-res: only the normal ones; default: both)",
    )
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default: %(default)s, ImageNet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Heavy imports here, not at module level: the CLI imports every command to build its parser.
    import torch

    from incdet.nets.complexity import count_macs, count_parameters
    from incdet.nets.factory import build_classifier, default_input_size, min_input_size

    if any(w <= 0 for w in args.width):
        raise InputError(None, f"--width must be positive, got {args.width}")
    if args.num_classes < 1:
        raise InputError(None, f"--num-classes must be at least 1, got {args.num_classes}")
    resolutions = [False, True] if args.low_res is None else [args.low_res]
    variants = [(arch, low_res) for arch in args.arch for low_res in resolutions]
    if args.input_size is not None:
        too_small = [f"{arch}{' low-res' if low_res else ''} (min {min_input_size(arch, low_res)})"
                     for arch, low_res in variants if args.input_size < min_input_size(arch, low_res)]
        if too_small:
            raise InputError(None, f"--input-size {args.input_size} is too small for {', '.join(too_small)}")

    print(f"{'arch':<13} {'stem':<7} {'width':>5} {'input':>5} {'params':>10} {'mult-adds':>10}")
    for arch, low_res in variants:
        size = args.input_size or default_input_size(arch, low_res)
        for width in args.width:
            with torch.device("meta"):  # shapes only: no memory, no weight init, no real arithmetic
                model = build_classifier(arch, args.num_classes, width=width, low_res=low_res)
            params, macs = count_parameters(model), count_macs(model, size)
            stem = "low-res" if low_res else "normal"
            print(f"{arch:<13} {stem:<7} {width:>5g} {size:>5} {params / 1e6:>9.2f}M {macs / 1e9:>9.3f}G")
    return 0
