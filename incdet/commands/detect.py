"""``incdet detect IMAGES...``: the whole pipeline over images, to a COCO-results JSON (and drawings)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from incdet.errors import InputError
from incdet.io import collect_images
from incdet.weights import DEMO_REGION_MODELS

if TYPE_CHECKING:
    import numpy as np



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect", help="detect objects in images (selective search -> Inception ensemble -> NMS)",
        description="Exit codes: 0 done (bad images are reported and skipped), 1 no image could be processed, 2 bad input.",
    )
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--model", action="append", help="region-classifier checkpoint; repeat for an ensemble (default: the shipped demo model)")
    parser.add_argument("--out", default="out/detections.json", help="COCO-results JSON to write (default: %(default)s)")
    parser.add_argument("--draw", metavar="DIR", help="also write each image with its labelled boxes as DIR/<name>.png")
    parser.add_argument("--draw-threshold", type=float, default=0.5, help="minimum score of drawn boxes (default: %(default)s)")
    parser.add_argument("--score-threshold", type=float, default=0.05, help="minimum score of written detections (default: %(default)s)")
    parser.add_argument("--nms-iou", type=float, default=0.3, help="per-class NMS IoU (R-CNN: 0.3; default: %(default)s)")
    parser.add_argument("--max-detections", type=int, default=100, help="per image (default: %(default)s)")
    parser.add_argument("--superpixel-scale", type=float, default=2.0, help="selective-search superpixel size, x R-CNN's (default: %(default)s)")
    parser.add_argument("--proposals", help="precomputed proposals (.npz/.json from `incdet propose`) instead of searching")
    multibox = parser.add_mutually_exclusive_group()
    multibox.add_argument("--multibox", metavar="CKPT", help="merge this MultiBox network's top-N boxes into the proposals "
                          "(default with the demo model and no --proposals: the shipped demo MultiBox network, if present)")
    multibox.add_argument("--no-multibox", action="store_true", help="selective search only")
    parser.add_argument("--multibox-top-n", type=int, default=200, help="MultiBox boxes per image (default: %(default)s)")
    parser.add_argument("--classes", help="class list file; refuse checkpoints trained on another list")
    parser.add_argument("--workers", type=int, help="selective-search processes (default: one per CPU)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.set_defaults(func=run)


def image_proposals(paths: list[Path], args: argparse.Namespace) -> tuple[dict[Path, np.ndarray], list[str], dict[Path, float]]:
    """Proposals per image, from ``--proposals`` or selective search over a process pool, with the
    top-N boxes of a MultiBox network merged in when one is configured (see ``detect_checkpoint``).

    Returns the proposals, the skipped images' one-line reasons and the search seconds per image.
    """
    from tqdm import tqdm

    from incdet.multibox.propose import detect_checkpoint, with_multibox
    from incdet.proposals.batch import propose_images
    from incdet.proposals.files import load_proposals
    from incdet.proposals.settings import SearchSettings

    if args.proposals:
        stored = load_proposals(args.proposals)
        missing = [str(InputError(p, f"no proposals for this image in {args.proposals}")) for p in paths if p.name not in stored]
        boxes, skipped, seconds = {p: stored[p.name] for p in paths if p.name in stored}, missing, {}
    else:
        with tqdm(total=len(paths), desc="proposals", unit="img") as bar:
            run = propose_images(paths, SearchSettings(superpixel_scale=args.superpixel_scale), workers=args.workers,
                                 on_done=lambda _: bar.update())
        for message in run.skipped.messages():
            tqdm.write(f"skipped {message}", file=sys.stderr)
        boxes, skipped, seconds = run.boxes, run.skipped.messages(), run.seconds
    checkpoint = detect_checkpoint(args.multibox, args.no_multibox, default_applies=not args.model and not args.proposals)
    if checkpoint is None:
        return boxes, skipped, seconds
    return with_multibox(paths, boxes, skipped, seconds, checkpoint, args.multibox_top_n, args.device)


def run(args: argparse.Namespace) -> int:
    # Heavy imports here, not at module level: the CLI imports every command to build its parser.
    from tqdm import tqdm

    from incdet.classify.ensemble import load_ensemble
    from incdet.data.classes import read_class_list
    from incdet.detector import Detector, DetectorConfig
    from incdet.devices import resolve_device
    from incdet.io import read_image, write_image, write_json
    from incdet.postprocess.coco_results import to_coco_records
    from incdet.postprocess.draw import draw_detections

    device = resolve_device(args.device)
    expected = read_class_list(args.classes) if args.classes else None
    ensemble = load_ensemble(args.model or list(DEMO_REGION_MODELS), device, expected)
    detector = Detector(ensemble, DetectorConfig(args.score_threshold, args.nms_iou, args.max_detections), device)
    paths = collect_images(args.images)
    start = time.perf_counter()
    proposals, skipped, search_seconds = image_proposals(paths, args)

    records: list[dict] = []
    for image_id, path in enumerate(tqdm(paths, desc="detect", unit="img")):
        if path not in proposals:
            continue
        try:
            image = read_image(path)
            dets = detector.detect(image, proposals[path])
        except InputError as exc:
            skipped.append(str(exc))
            tqdm.write(f"skipped {exc}", file=sys.stderr)
            continue
        records.extend(to_coco_records(dets, image_id, path.name, detector.classes))
        if args.draw:
            write_image(Path(args.draw) / f"{path.stem}.png", draw_detections(image, dets, detector.classes, args.draw_threshold))
    processed = len(paths) - len(skipped)
    if processed == 0:
        print(f"incdet: error: none of the {len(paths)} images could be processed", file=sys.stderr)
        return 1
    write_json(args.out, records)
    elapsed = time.perf_counter() - start
    # Selective search runs in parallel, so its summed seconds exceed its share of the wall time.
    stages = {"proposals": sum(search_seconds.values()), **detector.seconds} if search_seconds else dict(detector.seconds)
    print(f"{processed} images in {elapsed:.1f} s wall ({elapsed / processed:.2f} s/image) on {device}")
    print("per stage, s/image: " + ", ".join(f"{name} {sec / processed:.3f}" for name, sec in stages.items()))
    print(f"{len(records)} detections ({len(ensemble.members)}-model ensemble, classes: {', '.join(detector.classes)})")
    if skipped:
        print(f"{len(skipped)} images skipped:\n  " + "\n  ".join(skipped))
    print(f"detections written to {args.out}")
    if args.draw:
        print(f"drawn images written to {args.draw}/")
    return 0
