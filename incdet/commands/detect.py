"""``incdet detect IMAGES...``: the whole pipeline over images, to a COCO-results JSON (and drawings).

A thin wrapper: :class:`incdet.pipeline.Pipeline` does the detecting, :class:`incdet.engine.DetectionJob`
runs it over the images (resumably, in shards, locally or on Ray); this module turns the options into
both, prints the summary, and turns the outcome into an exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from incdet.commands._batch import FOLDERS, add_engine_arguments, add_search_arguments, execution, interrupted, search_settings, start_workers
from incdet.errors import InputError

# The defaults of the options a model bundle also sets. The parser's defaults are None, so that
# _pipeline knows which ones were given (those override a bundle's values); it fills these in.
DEFAULTS = {"score_threshold": 0.05, "nms_iou": 0.3, "max_detections": 100, "multibox_top_n": 200}
SELECTION_OPTIONS = ("score_threshold", "nms_iou", "max_detections")
SEARCH_OPTIONS = ("superpixel_scale", "search_width")  # and --ss-backend, None by default already


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect", help="detect objects in images (selective search + MultiBox -> Inception ensemble -> NMS)",
        description=f"{FOLDERS} Results are written as they finish to OUT.parts/; rerun the same command after a crash or "
        "Ctrl-C to resume. Exit codes: 0 done (bad images are reported and skipped), 1 no image could be processed, "
        "2 bad input, 130 interrupted.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGES", help="image files and/or folders of images, or object-store URLs (s3://bucket/prefix)")
    parser.add_argument("--model", action="append", help="region-classifier checkpoint; repeat for an ensemble (default: the shipped "
                        "demo ensemble); or a model bundle folder (a whole detector: its models and settings; options given "
                        "explicitly override its settings), alone")
    parser.add_argument("--out", type=Path, default=Path("out/detections.json"), help="COCO-results JSON to write (default: %(default)s)")
    parser.add_argument("--draw", type=Path, metavar="DIR", help="also write each image with its labelled boxes as DIR/<key>.png")
    parser.add_argument("--draw-threshold", type=float, default=0.5, help="minimum score of drawn boxes (default: %(default)s)")
    parser.add_argument("--score-threshold", type=float,
                        help=f"minimum score of written detections (default: {DEFAULTS['score_threshold']}, or the bundle's)")
    parser.add_argument("--nms-iou", type=float, help=f"per-class NMS IoU (R-CNN: 0.3; default: {DEFAULTS['nms_iou']}, or the bundle's)")
    parser.add_argument("--max-detections", type=int, help=f"per image (default: {DEFAULTS['max_detections']}, or the bundle's)")
    add_search_arguments(parser)
    # The search options' real defaults stay in their help and in args.search_defaults.
    search_defaults = {}
    for action in parser._actions:
        if action.dest in SEARCH_OPTIONS:
            search_defaults[action.dest] = action.default
            action.help = action.help.replace("%(default)s", f"{action.default}, or the bundle's")
            action.default = None
    parser.set_defaults(search_defaults=search_defaults)
    parser.add_argument("--proposals", type=Path, help="stored proposals instead of searching: a store (.db) or a flat .npz/.json "
                        "from `incdet propose`, keyed like the images")
    multibox = parser.add_mutually_exclusive_group()
    multibox.add_argument("--multibox", metavar="CKPT", help="merge this MultiBox network's top-N boxes into the proposals "
                          "(default with the demo model and no --proposals: the shipped demo MultiBox network; with a "
                          "bundle and no --proposals: the bundle's, if it has one)")
    multibox.add_argument("--no-multibox", action="store_true", help="selective search only")
    parser.add_argument("--multibox-top-n", type=int, help=f"MultiBox boxes per image (default: {DEFAULTS['multibox_top_n']}, or the bundle's)")
    parser.add_argument("--classes", help="class list file; refuse checkpoints trained on another list")
    parser.add_argument("--no-bbox-reg", action="store_true", help="keep the proposals' boxes: do not apply the models' box "
                        "regressors (default: applied, averaged over the models that have one)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="what the networks compute in (autocast); auto: bf16 on a GPU that has it, fp32 on the CPU "
                        "(default: %(default)s)")
    parser.add_argument("--runtime", choices=("auto", "torch", "onnxruntime"), default="auto",
                        help="what runs the region classifiers; auto: onnxruntime for fp32 on the CPU (faster there, same "
                        "scores within 1e-6), torch otherwise (default: %(default)s)")
    add_engine_arguments(parser)
    parser.add_argument("--merge", nargs="*", type=Path, metavar="PARTS", help="join finished shards' work folders (default: "
                        "every OUT.shard-I-of-N.parts beside OUT) into OUT, instead of detecting")
    parser.set_defaults(func=run)


def _pipeline(args: argparse.Namespace, device: str, load: bool = True):
    """The pipeline the options ask for: from ``--model`` files (default: the shipped ensemble), or from
    one model bundle folder with the options given explicitly overriding its settings (``load``: as
    :class:`~incdet.pipeline.Pipeline`'s)."""
    from dataclasses import replace

    from incdet.bundle import read_bundle
    from incdet.data.classes import read_class_list
    from incdet.multibox.propose import MultiBoxSettings
    from incdet.pipeline import DEFAULT_MULTIBOX, Pipeline, SelectionSettings
    from incdet.weights import DEMO_REGION_MODELS

    models = args.model or []
    folders = [m for m in models if Path(m).is_dir()]
    if folders and len(models) > 1:
        raise InputError(folders[0], "a model bundle is a whole detector: give it as the only --model, not with other models")
    bundle = read_bundle(folders[0]) if folders else None
    given = {name: getattr(args, name) for name in SELECTION_OPTIONS if getattr(args, name) is not None}
    try:
        selection = replace(bundle.selection if bundle else SelectionSettings(*(DEFAULTS[name] for name in SELECTION_OPTIONS)), **given)
        multibox_settings = bundle.multibox_settings if bundle else MultiBoxSettings(top_n=DEFAULTS["multibox_top_n"])
        if args.multibox_top_n is not None:
            multibox_settings = replace(multibox_settings, top_n=args.multibox_top_n)
    except ValueError as exc:
        flag = str(exc).split()[0].replace("top_n", "multibox_top_n").replace("_", "-")
        raise InputError(None, f"--{flag}: {exc}") from None
    if not 0 <= args.draw_threshold <= 1:
        raise InputError(None, f"--draw-threshold must be in [0, 1], got {args.draw_threshold}")
    search = _search(args, bundle.search if bundle else None)
    classes = read_class_list(args.classes) if args.classes else None
    common = {"multibox_settings": multibox_settings, "selection": selection, "device": device, "precision": args.precision,
              "runtime": args.runtime, "load": load}
    if bundle is None:
        multibox = None if args.no_multibox else args.multibox or (None if args.proposals else DEFAULT_MULTIBOX)
        return Pipeline(models or list(DEMO_REGION_MODELS), multibox, search, classes=classes, bbox_reg=not args.no_bbox_reg,
                        **common)
    overrides = {}
    if args.multibox or args.no_multibox or args.proposals:
        # As with the shipped models, stored proposals are used as they are unless --multibox names a network.
        overrides["multibox"] = args.multibox  # None: --no-multibox, or --proposals alone
    if classes is not None:
        overrides["classes"] = classes
    if args.no_bbox_reg:
        overrides["bbox_reg"] = False
    return Pipeline.from_bundle(bundle, search=search, **overrides, **common)


def _search(args: argparse.Namespace, base):
    """The search settings: the options given, the rest from ``base`` (a bundle's) or the defaults."""
    from dataclasses import replace

    if base is None:
        filled = {name: args.search_defaults[name] if getattr(args, name) is None else getattr(args, name) for name in SEARCH_OPTIONS}
        return search_settings(argparse.Namespace(**{**vars(args), **filled}))
    filled = {name: getattr(base, name) if getattr(args, name) is None else getattr(args, name) for name in SEARCH_OPTIONS}
    given = search_settings(argparse.Namespace(**{**vars(args), **filled, "ss_backend": args.ss_backend or base.backend}))
    # The fields no option sets (min_size, seed) stay the bundle's.
    return replace(base, backend=given.backend, superpixel_scale=given.superpixel_scale, search_width=given.search_width)


def run(args: argparse.Namespace) -> int:
    start_workers(args)  # before the imports below: the workers' own imports run meanwhile
    # Heavy imports here, not at module level: the CLI imports every command to build its parser.
    from incdet.engine import DetectionJob, join_shards
    from incdet.engine.plan import Shard
    from incdet.engine.steps import Drawing

    if args.merge is not None:
        if args.images:
            raise InputError(None, "--merge joins finished shards' work folders; give it no IMAGES")
        joined = join_shards(args.out, args.merge)
        if joined.summary.images == 0:
            print(f"incdet: error: the {len(joined.shards)} shards hold no processed image", file=sys.stderr)
            return 1
        print("\n".join(_summary_lines(joined.summary)))
        print(f"merged {len(joined.shards)} shards into {args.out}")
        return 0
    if not args.images:
        raise InputError(None, "give the IMAGES to detect in (files or folders), or --merge")
    where = execution(args)
    shard = Shard.parse(args.shard)
    drawing = Drawing(args.draw, args.draw_threshold) if args.draw else None
    DetectionJob.check_outputs(args.out, shard, drawing)
    # The Ray engine's actors build their own networks (on their GPUs); this copy only reads the model files.
    pipeline = _pipeline(args, args.device if args.engine == "local" else "cpu", load=args.engine == "local")
    job = DetectionJob(args.images, args.out, pipeline, proposals=args.proposals, drawing=drawing,
                       group_size=args.batch_images, shard=shard)
    if job.done:
        print(f"resuming: {job.done} of {job.total} images are done in {job.work}")
    stats = job.run(where)
    if stats.interrupted:
        return interrupted(job.saved + stats.images + stats.skipped, job.total, job.work)

    summary = job.finish()
    if summary.images == 0 and summary.skipped:
        print(f"incdet: error: none of the {job.total} images could be processed", file=sys.stderr)
        return 1
    device = pipeline.device if args.engine == "local" else f"Ray ({args.ray_address or 'local instance'})"
    if stats.images:
        print(f"{stats.images} images in {stats.wall:.1f} s wall ({stats.wall / stats.images:.2f} s/image) on {device}")
        # Selective search runs in parallel, so its summed seconds exceed its share of the wall time.
        print(f"per stage, s/image: {stats.per_stage()}")
    proposer = pipeline.proposer
    if proposer.multibox_path is not None and summary.images:
        counts, n = summary.proposals, summary.images
        print(f"proposals: selective search + MultiBox top-{proposer.multibox_settings.top_n} "
              f"({proposer.multibox_path.name}): {counts['total'] / n:.0f}/image, of which "
              f"{counts['multibox'] / n:.0f} only MultiBox proposed and {counts['both'] / n:.0f} both stages")
    print("\n".join(_summary_lines(summary, f" ({len(pipeline.specs)}-model ensemble, classes: {', '.join(pipeline.classes)})")))
    if not job.shard.whole:
        print(f"shard {job.shard.index}/{job.shard.count} done in {job.work}; when every shard is done: incdet detect --merge --out {job.out}")
        return 0
    print(f"detections written to {job.out}")
    if summary.retry:
        print(f"{summary.retry} of the skipped images failed for a reason that may pass (an I/O error, memory); "
              f"{job.work} keeps the job: run the same command again to retry them")
    if drawing:
        print(f"drawn images written to {drawing.folder}/")
    return 0


def _summary_lines(summary, models: str = "") -> list[str]:
    lines = [f"{summary.detections} detections on {summary.images} images{models}"]
    if summary.skipped:
        lines.append(f"{len(summary.skipped)} images skipped:\n  " + "\n  ".join(summary.skipped))
    if summary.warnings:
        lines.append(f"{len(summary.warnings)} warnings (images kept):\n  " + "\n  ".join(summary.warnings))
    return lines
