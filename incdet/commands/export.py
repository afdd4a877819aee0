"""``incdet export --model M.pt --out M.onnx``: a region classifier (and its box regressor) as ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from incdet.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a region classifier as ONNX",
        description="The ONNX graph takes (N, 3, S, S) normalised warped crops, N free, and returns probs (N, C+1) "
                    "and, with a box regressor, deltas (N, 4(C+1)); the metadata key 'incdet' says how to make the "
                    "crops and read the outputs. Exit codes: 0 written, 2 bad input.",
    )
    parser.add_argument("--model", required=True, type=Path, help="region-classifier checkpoint (.pt)")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write (.onnx)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from incdet.classify.checkpoint import load_region_classifier
    from incdet.classify.export import export_onnx
    from incdet.io import check_output_path

    if args.out.suffix.lower() != ".onnx":
        raise InputError(args.out, "the output must end in .onnx")
    check_output_path(args.out)
    spec, model = load_region_classifier(args.model)
    export_onnx(spec, model, args.out)
    outputs = "probs and deltas" if spec.bbox_reg else "probs"
    print(f"wrote {args.out}: {spec.arch} @ {spec.input_size} px, {len(spec.classes)} classes + background, outputs {outputs}")
    return 0
