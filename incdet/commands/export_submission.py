"""``incdet export-submission``: COCO-results detections as an ILSVRC-DET devkit submission file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from incdet.data.dataset import load_dataset
from incdet.data.ilsvrc import submission_numbers
from incdet.evaluate.detections import detection_arrays, read_detections
from incdet.postprocess.submission import write_submission
from incdet.structures import SkipReport

DESCRIPTION = """\
Write detections (COCO-results JSON, e.g. from incdet detect) as the ILSVRC-DET devkit's submission
file, one line per detection:

    <image_index> <ILSVRC2014_DET_ID> <confidence> <xmin> <ymin> <xmax> <ymax>

image_index is the image's number in the image set of --gt (val.txt's second column), the box is
in the devkit's inclusive pixel frame ([x, y, w, h] -> x, y, x + w - 1, y + h - 1). Lines keep the
order of the records. Detections that cannot be written (image not in the image set, unknown class,
bad box or score) are skipped and listed. incdet eval --dets F.txt reads the file back.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export-submission", help="detections JSON -> ILSVRC devkit submission file",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dets", required=True, type=Path, help="detections JSON (COCO-results records)")
    parser.add_argument("--gt", required=True, type=Path,
                        help="the ILSVRC-DET release (root, devkit or image-set file) whose image numbers to use")
    parser.add_argument("--split", help="image set of --gt when it is a root or devkit (default: val)")
    parser.add_argument("--out", required=True, type=Path, help="submission file to write (.txt)")
    parser.add_argument("--show-skipped", type=int, default=20, metavar="N", help="list at most N skipped items")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.gt, split=args.split)
    numbers = submission_numbers(dataset, args.gt)
    records = read_detections(args.dets)
    report = SkipReport()
    filenames = [a.filename for a in dataset.annotations]
    sizes = np.array([[a.width, a.height] for a in dataset.annotations], np.float64).reshape(-1, 2)
    d = detection_arrays(records, filenames, sizes, dataset.classes, dataset.category_ids, report, str(args.dets))
    det_id_of = {name: det_id for det_id, name in dataset.category_ids.items()}
    number = np.array([numbers.get(f, -1) for f in filenames], np.int64)
    numbered = number[d.image] >= 0
    for k in np.flatnonzero(~numbered):
        report.skip("detection", args.dets, f"detection #{d.record[k]} ({filenames[d.image[k]]}): the image has no "
                                            "number in the image set")
    keep = np.flatnonzero(numbered)
    det_ids = np.array([det_id_of[dataset.classes[c]] for c in d.label[keep].tolist()], np.int64)
    items = [item.message for item in report.items if item.kind != "warning"]
    for message in items[:max(args.show_skipped, 0)]:
        print(f"  skipped: {message}", file=sys.stderr)
    if records and not len(keep):
        print(f"incdet export-submission: none of the {len(records)} detections could be written "
              f"({report.summary()})", file=sys.stderr)
        return 1
    lines = write_submission(args.out, number[d.image[keep]], det_ids, d.scores[keep], d.boxes[keep])
    print(f"wrote {lines} lines to {args.out} ({len(records)} records in {args.dets}; {report.summary()}; "
          f"image_index from the image set of {args.gt})")
    return 0
