"""``incdet export --model M.pt --out M.onnx``: a region classifier (and its box regressor) as ONNX;
``incdet export --model BUNDLE --out DIR``: each member of a model bundle as ``DIR/<member>.onnx``."""

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
    parser.add_argument("--model", required=True, type=Path, help="region-classifier checkpoint (.pt), or a model bundle folder")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write (.onnx); with a bundle, the folder to write "
                        "each member to, as OUT/<member>.onnx")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from incdet.classify.classifier_file import load_region_classifier
    from incdet.classify.export import export_onnx
    from incdet.io import check_output_path

    if args.model.is_dir():
        return _export_bundle(args.model, args.out)
    if args.out.suffix.lower() != ".onnx":
        raise InputError(args.out, "the output must end in .onnx")
    check_output_path(args.out)
    spec, model = load_region_classifier(args.model)
    export_onnx(spec, model, args.out)
    _report(args.out, spec)
    return 0


def _export_bundle(folder: Path, out: Path) -> int:
    """Every member of the bundle at ``folder`` as ``out/<member>.onnx`` (the bundle is checked first)."""
    from incdet.bundle import read_bundle
    from incdet.classify.classifier_file import load_region_classifier
    from incdet.classify.export import export_onnx
    from incdet.io import check_output_path

    if out.suffix.lower() == ".onnx":
        raise InputError(out, "a bundle exports one ONNX file per member: give a folder to write them to")
    bundle = read_bundle(folder)
    check_output_path(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    for member in bundle.members:
        spec, model = load_region_classifier(member)
        path = out / f"{member.stem}.onnx"
        export_onnx(spec, model, path)
        _report(path, spec)
    return 0


def _report(path: Path, spec) -> None:
    outputs = "probs and deltas" if spec.bbox_reg else "probs"
    print(f"wrote {path}: {spec.arch} @ {spec.input_size} px, {len(spec.classes)} classes + background, outputs {outputs}")
