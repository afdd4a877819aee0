"""What the shipped ensemble and its box regression buy on the demo test split (README: "The recipe").

    python bench/ensemble.py [--models A.pt B.pt ... | --bundle DIR] [--device cpu] [--split benchmark] [--runtimes torch onnxruntime]

Each image's proposals (selective search x2 + the shipped MultiBox top 200, as `incdet detect`
makes them; with ``--bundle``, its members and its own MultiBox network) are computed once and shared; then every member alone, the ensemble, and the
ensemble without box regression classify the same proposals. mAP at IoU 0.5 and 0.7 with the
ILSVRC rules (`incdet eval`'s evaluator), and seconds per image: classification (warp, networks,
NMS) of each configuration, and that plus the shared proposals, i.e. what `incdet detect` costs;
with ``--runtimes``, each configuration once per runtime that runs the classifiers (``incdet detect
--runtime``), side by side.
The same numbers, one configuration at a time, come from the CLI:

    incdet detect demo/test/images --model M.pt [--model ...] --multibox incdet/weights/demo/multibox.pt \
        [--no-bbox-reg] --out out/d.json
    incdet eval --gt demo/test/annotations --dets out/d.json [--iou 0.7]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from incdet.bundle import read_bundle
from incdet.data.dataset import load_dataset
from incdet.data.demo import generate_demo
from incdet.evaluate import evaluate_detections
from incdet.io import read_image
from incdet.multibox.proposer import Proposer
from incdet.pipeline import Pipeline
from incdet.postprocess.coco_results import to_coco_records
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS

BATCH = 8  # images per call, as `incdet detect --batch-images` defaults
BENCHMARK_IMAGES = 300  # `incdet data demo --benchmark-images 300`


def measure(pipeline: Pipeline, images: list, proposals: list) -> tuple[list, float]:
    """Detections of every image on the given proposals, and the seconds that took."""
    detections, start = [], time.perf_counter()
    for i in range(0, len(images), BATCH):
        detections += pipeline(images[i : i + BATCH], proposals[i : i + BATCH])
    return detections, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", type=Path, default=list(DEMO_REGION_MODELS))
    parser.add_argument("--bundle", type=Path, help="a model bundle's members and MultiBox network instead (incdet train detector)")
    parser.add_argument("--demo", type=Path, help="the demo dataset (default: generated into a temporary folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--split", default="test", choices=("test", "benchmark"),
                        help="demo split: test (40 images) or benchmark (--benchmark-images, 300 here; one object under 0.2 points)")
    parser.add_argument("--runtimes", nargs="+", default=["auto"], choices=("auto", "torch", "onnxruntime"))
    args = parser.parse_args()
    multibox = DEMO_MULTIBOX
    if args.bundle is not None:
        bundle = read_bundle(args.bundle)
        args.models, multibox = [Path(m) for m in bundle.members], bundle.multibox
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo or Path(tmp) / "demo"
        if not (demo / args.split).is_dir():
            generate_demo(demo, seed=0, counts={"benchmark": BENCHMARK_IMAGES if args.split == "benchmark" else 0})
        split = load_dataset(demo / args.split / "annotations")
        images = [read_image(split.image_path(a)) for a in split.annotations]
        proposer = Proposer(multibox=multibox, device=args.device)
        start = time.perf_counter()
        proposals = [p for i in range(0, len(images), BATCH) for p in proposer(images[i : i + BATCH])]
        propose_s = (time.perf_counter() - start) / len(images)
        boxes = sum(len(p) for p in proposals) / len(images)
        print(f"{len(images)} demo {args.split} images, {boxes:.1f} proposals each (selective search x2 + MultiBox top 200): "
              f"{propose_s:.3f} s/image, shared by every row\n")

        runs = [(m.name, [m], True) for m in args.models]
        if len(args.models) > 1:
            runs += [(f"ensemble of {len(args.models)}", args.models, True), (f"ensemble of {len(args.models)}, --no-bbox-reg", args.models, False)]
        print("| models | runtime | mAP@0.5 | mAP@0.7 | s/image classify | s/image total |")
        print("|---|---|---:|---:|---:|---:|")
        for (name, models, bbox_reg), runtime in ((run, runtime) for run in runs for runtime in args.runtimes):
            pipeline = Pipeline(models, multibox=None, bbox_reg=bbox_reg, device=args.device, runtime=runtime)
            measure(pipeline, images[:BATCH], proposals[:BATCH])  # warm-up (oneDNN kernel selection)
            detections, seconds = measure(pipeline, images, proposals)
            records = [r for i, (a, d) in enumerate(zip(split.annotations, detections))
                       for r in to_coco_records(d, i, a.filename, pipeline.classes)]
            maps = [evaluate_detections(split.annotations, records, split.classes, iou).mean_ap for iou in (0.5, 0.7)]
            per_image = seconds / len(images)
            print(f"| {name} | {pipeline.runtime} | {100 * maps[0]:.2f}% | {100 * maps[1]:.2f}% | {per_image:.3f} | {per_image + propose_s:.3f} |", flush=True)


if __name__ == "__main__":
    main()
