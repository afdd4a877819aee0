"""``incdet eval``: per-class AP and mAP of detections (a COCO-results JSON, or an ILSVRC-DET
devkit submission file) against ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from incdet.data.classes import read_class_list
from incdet.data.dataset import load_dataset
from incdet.data.ilsvrc import submission_numbers
from incdet.data.records import Dataset
from incdet.errors import InputError
from incdet.evaluate import EvalResult, evaluate_detections
from incdet.evaluate.detections import read_detections
from incdet.evaluate.evaluator import evaluate_detection_arrays
from incdet.evaluate.report import SORT_KEYS, format_table, to_json, write_pr_curves
from incdet.evaluate.submission import is_submission_file, read_submission
from incdet.io import check_output_path, write_json
from incdet.structures import SkipReport

DESCRIPTION = """\
Mean average precision at IoU 0.5 with the ILSVRC-DET rules: VOC-style all-point AP per class,
each object matched at most once (duplicates are false positives), a lower IoU threshold for
small objects (min(0.5, wh/((w+10)(h+10)))), difficult/crowd objects and the ILSVRC validation
blacklist ignored.

--gt accepts a VOC annotation folder (e.g. demo/test/annotations), an ILSVRC-DET release in the
2015 layout (Data/DET, Annotations/DET, ImageSets/DET) or the 2013/2014 one (ILSVRC2013_DET_val,
ILSVRC2013_DET_bbox_val, ... beside ILSVRC2014_devkit): its root or devkit folder (with --split,
default val) or one of its image-set files (ImageSets/DET/*.txt, devkit/data/det_lists/*.txt), or
a COCO instances .json.

--dets is a COCO-results JSON, or (a .txt file, or content that is not JSON) an ILSVRC-DET devkit
submission file "<image_index> <ILSVRC2014_DET_ID> <confidence> <xmin> <ymin> <xmax> <ymax>",
boxes inclusive, image_index from the image set's numbers (val.txt's second column).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="per-class AP and mAP of detections against ground truth",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, type=Path, help="ground truth (see above)")
    parser.add_argument("--dets", required=True, type=Path,
                        help="detections: COCO-results JSON, or an ILSVRC devkit submission .txt (see above)")
    parser.add_argument("--split", help="image set of an ILSVRC devkit root or VOC year folder (default: val)")
    parser.add_argument("--classes", type=Path, help="class list, one per line, in category_id order "
                        "(default: the dataset's, a classes.txt near the annotations, or the names seen)")
    parser.add_argument("--blacklist", type=Path, help="ILSVRC validation blacklist (default: found in devkit/data)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    parser.add_argument("--no-small-object-rule", action="store_true",
                        help="use the IoU threshold for every object, also the small ones")
    parser.add_argument("--sort", choices=SORT_KEYS, default="ap", help="table order (default: ap, best first)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plots", type=Path, help="write one precision-recall PNG per class into this folder")
    parser.add_argument("--show-skipped", type=int, default=20, metavar="N",
                        help="list at most N skipped items (default 20; all are in --json)")
    parser.set_defaults(func=run)


def _classes(dataset: Dataset, records: list) -> list[str]:
    """The dataset's class list; when it was only inferred from the ground-truth labels, also
    the class names the detections use (sorted), so their false positives are counted too."""
    if not dataset.classes_inferred:
        return dataset.classes
    names = {r.get("category_name") for r in records if isinstance(r, dict)}
    return sorted(set(dataset.classes) | {n for n in names if isinstance(n, str)})


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.iou <= 1.0:
        raise InputError(None, f"--iou must be in (0, 1], got {args.iou}")
    if args.json:
        check_output_path(args.json)
    if args.plots:
        check_output_path(args.plots, folder=True)
    classes = read_class_list(args.classes) if args.classes else None
    dataset = load_dataset(args.gt, split=args.split, classes=classes, blacklist=args.blacklist)
    rule = not args.no_small_object_rule
    if is_submission_file(args.dets):
        result = _evaluate_submission(args, dataset, rule)
        count, what = len(result.detection_status), "lines"
    else:
        records = read_detections(args.dets)
        result = evaluate_detections(dataset.annotations, records, _classes(dataset, records), iou_threshold=args.iou,
                                     small_object_rule=rule, ignored=dataset.ignored,
                                     category_ids=dataset.category_ids, source=str(args.dets))
        count, what = len(records), "records"
    skipped = dataset.skipped
    skipped.extend(result.skipped)
    result.skipped = skipped

    print(format_table(result, args.sort, dataset.display_names))
    print(f"ground truth: {dataset.format} from {args.gt} ({len(dataset.annotations)} images; classes: "
          f"{dataset.classes_source}); detections: {count} {what} in {args.dets}")
    items = sorted(skipped.items, key=lambda item: item.kind == "warning")  # skipped first, then warnings
    for item in items[:max(args.show_skipped, 0)]:
        print(f"  {'warning' if item.kind == 'warning' else 'skipped'}: {item.message}", file=sys.stderr)
    if len(items) > args.show_skipped:
        print(f"  ... and {len(items) - args.show_skipped} more lines (all are in --json)", file=sys.stderr)
    print(skipped.summary(), file=sys.stderr)

    if args.json:
        write_json(args.json, to_json(result, dataset.display_names))
        print(f"wrote {args.json}")
    if args.plots:
        written = write_pr_curves(result, args.plots, dataset.display_names)
        print(f"wrote {len(written)} precision-recall plots to {args.plots}")

    if not result.evaluated_classes:
        print("incdet eval: the ground truth has no (non-difficult) objects of any class; nothing to evaluate",
              file=sys.stderr)
        return 1
    if count and not (result.detection_status != -2).any():
        print("incdet eval: none of the detections could be evaluated (see the skipped items)", file=sys.stderr)
        return 1
    return 0


def _evaluate_submission(args: argparse.Namespace, dataset: Dataset, small_object_rule: bool) -> EvalResult:
    """A devkit submission file: its image_index refers to the image set's numbers."""
    numbers = submission_numbers(dataset, args.gt)
    report = SkipReport()
    dets, lines = read_submission(args.dets, [a.filename for a in dataset.annotations], numbers, dataset.classes,
                                  dataset.category_ids, report)
    return evaluate_detection_arrays(dataset.annotations, dets, lines, dataset.classes, iou_threshold=args.iou,
                                     small_object_rule=small_object_rule, ignored=dataset.ignored, report=report,
                                     source=str(args.dets), name=lambda record: f"line {record + 1}")
