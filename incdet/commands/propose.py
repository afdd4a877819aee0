"""``incdet propose``: selective-search (+ MultiBox) proposals for images or folders, cached in one file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from incdet.errors import InputError
from incdet.io import collect_images

if TYPE_CHECKING:
    import numpy as np

    from incdet.proposals.batch import ProposalRun

RECALL_COUNTS = (10, 50, 100, 300, 500, 1000, 2000)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "propose",
        help="selective-search (+ MultiBox) region proposals for images",
        description="Compute selective-search proposals (R-CNN fast mode, GoogLeNet's doubled superpixels "
        "by default) for images, in parallel, and save them keyed by image file name; optionally merge in a "
        "MultiBox network's top-N boxes and compare the three sets on ground truth (--report).",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGES", help="image files or folders of images")
    parser.add_argument("--out", type=Path, required=True, help="output file, .npz or .json")
    parser.add_argument(
        "--superpixel-scale",
        type=float,
        default=2.0,
        help="multiplies R-CNN's Felzenszwalb k {50,100}; 2 = GoogLeNet's doubled superpixels (default: 2.0)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: number of CPUs)")
    parser.add_argument(
        "--gt", type=Path, default=None, metavar="ANNOTATION_DIR",
        help="VOC XML folder; also report coverage, MABO and recall (matched by file name)",
    )
    mb = parser.add_argument_group("MultiBox (GoogLeNet's detection entry: selective search + top-N learned boxes)")
    mb.add_argument("--proposals", type=Path, metavar="FILE", help="selective-search boxes cached by an earlier run (.npz/.json) instead of searching again")
    mb.add_argument("--multibox", type=Path, metavar="CKPT", help="add this MultiBox network's top-N boxes; --out then holds the merged "
                    "boxes and OUT_STEM.sources.json says which stage proposed each")
    mb.add_argument("--top-n", type=int, default=200, help="MultiBox boxes per image (default: %(default)s, as the paper)")
    mb.add_argument("--dedup-iou", type=float, default=0.7, help="a MultiBox box this close to a selective-search box is the same box (default: %(default)s)")
    mb.add_argument("--report", action="store_true", help="with --gt: compare selective search, MultiBox and merged (MultiBox: --multibox, "
                    "else the shipped demo network) and write a recall plot")
    mb.add_argument("--baseline", type=Path, action="append", default=[], metavar="FILE",
                    help="also report these cached proposals (e.g. R-CNN's --superpixel-scale 1); repeatable")
    mb.add_argument("--plot", type=Path, metavar="PNG", help="recall-vs-proposals plot of --report (default: OUT_STEM_recall.png beside --out)")
    parser.set_defaults(func=run)


def _report_quality(boxes: dict[Path, np.ndarray], gt_dir: Path) -> None:
    from incdet.data.voc import read_voc_dir
    from incdet.proposals.quality import coverage, mabo, recall_at

    annotations = {Path(a.filename).stem: a for a in read_voc_dir(gt_dir)}
    matched = [(b, annotations[p.stem]) for p, b in boxes.items() if p.stem in annotations]
    if len(matched) < len(boxes):
        print(f"{len(boxes) - len(matched)} image(s) have no annotation in {gt_dir}; quality uses the other {len(matched)}")
    props = [b for b, _ in matched]
    gts = [a.boxes for _, a in matched]
    if not sum(len(g) for g in gts):
        print(f"no ground-truth boxes for these images in {gt_dir}; no quality report")
        return
    labels = [a.labels for _, a in matched]
    print(f"ground truth: {sum(len(g) for g in gts)} boxes in {len(matched)} images")
    print(f"coverage@0.5: {coverage(props, gts, 0.5):.3f}   MABO: {mabo(props, gts, labels):.3f}")
    most = max(len(b) for b in props)
    counts = [n for n in RECALL_COUNTS if n < most] + [most]
    at5, at7 = recall_at(props, gts, 0.5, counts), recall_at(props, gts, 0.7, counts)
    print("first N proposals  " + " ".join(f"{n:>6d}" for n in counts))
    print("recall@0.5         " + " ".join(f"{r:6.3f}" for r in at5))
    print("recall@0.7         " + " ".join(f"{r:6.3f}" for r in at7))


def run(args: argparse.Namespace) -> int:
    # Heavy imports here, not at module level: the CLI imports every command to build its parser.
    import numpy as np
    from tqdm import tqdm

    from incdet.proposals.batch import propose_images
    from incdet.proposals.files import check_file_path, save_proposals
    from incdet.proposals.settings import SearchSettings

    out = check_file_path(args.out)
    try:
        settings = SearchSettings(superpixel_scale=args.superpixel_scale)
    except ValueError as exc:
        raise InputError(None, f"--superpixel-scale: {exc}") from None
    if args.workers is not None and args.workers < 1:
        raise InputError(None, f"--workers must be at least 1, got {args.workers}")
    if args.gt is not None and not args.gt.is_dir():
        raise InputError(args.gt, "annotation folder does not exist")
    paths = collect_images(args.images)

    if args.report and args.gt is None:
        raise InputError(None, "--report needs --gt ANNOTATION_DIR to measure against")
    if args.baseline and not args.report:
        raise InputError(None, "--baseline is only used by --report")
    if args.multibox or args.report:
        from incdet.commands._proposal_report import (
            add_multibox_and_report,
            prepare_multibox,
        )

        multibox = prepare_multibox(args.multibox, args.top_n, args.dedup_iou, args.baseline)

    start = time.perf_counter()
    if args.proposals:
        result = _cached(paths, args.proposals)
    else:
        with tqdm(total=len(paths), unit="img", desc="selective search", file=sys.stderr) as bar:
            result = propose_images(paths, settings, workers=args.workers, on_done=lambda _: bar.update())
    wall = time.perf_counter() - start
    for message in result.skipped.messages():
        print(f"skipped {message}", file=sys.stderr)
    if not result.boxes:
        print(f"incdet: no image could be processed ({len(result.skipped)} skipped)", file=sys.stderr)
        return 1

    counts = np.array([len(b) for b in result.boxes.values()])
    done = len(result.boxes)
    print(
        f"{done} image(s) processed, {len(result.skipped)} skipped; proposals/image: mean {counts.mean():.0f} "
        f"(min {counts.min()}, max {counts.max()})"
    )
    if result.seconds:
        print(
            f"seconds/image: {np.mean(list(result.seconds.values())):.2f} per worker, "
            f"{wall / done:.2f} wall-clock over the batch"
        )
    boxes = result.boxes
    if args.multibox or args.report:
        ss_name = f"selective search ({args.proposals.name})" if args.proposals else f"selective search x{args.superpixel_scale:g}"
        boxes = add_multibox_and_report(result.boxes, ss_name, out, multibox, args.gt if args.report else None, args.plot)
    elif args.gt is not None:
        _report_quality(result.boxes, args.gt)
    save_proposals(out, {path.name: b for path, b in boxes.items()})
    print(f"wrote proposals for {len(boxes)} image(s) to {out}")
    return 0


def _cached(paths: list[Path], cache: Path) -> ProposalRun:
    """Selective-search boxes of ``paths`` from an earlier run's file; images it lacks are skipped."""
    from incdet.proposals.batch import ProposalRun
    from incdet.proposals.files import load_proposals

    stored = load_proposals(cache)
    run = ProposalRun()
    for path in paths:
        if path.name in stored:
            run.boxes[path] = stored[path.name]
        else:
            run.skipped.skip("image", path, f"no proposals for this image in {cache}")
    return run
