"""incdet's evaluator against pycocotools' COCOeval on the same data, in one process.

    python bench/eval.py [--images 5000] [--classes 200] [--dets-per-image 100] [--seed 0]

The default size is the ILSVRC-DET scale the issue asks for: 200 classes x 5,000 images x
100 detections per image (500,000 detections). Both evaluators get the same ground truth and
detections; COCOeval runs at IoU 0.5 only, one area range and maxDets=100 (every detection
kept), and pycocotools is handed its native COCO objects for free (building them is not
timed), while incdet's time includes checking the raw records. The small-object rule is off
for the timed incdet run, since COCOeval has no such rule; a second incdet run with it on
shows it costs nothing extra. Last, the same detections from files: a COCO-results JSON
(parsed, then checked record by record) and the devkit submission text file incdet writes
(read straight into arrays); both must give the same mAP.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from incdet.data.records import Annotation
from incdet.evaluate import evaluate_detections
from incdet.evaluate.coco import (
    coco_class_ap,
    coco_evaluate,
    to_coco_gt,
    to_coco_results,
)
from incdet.evaluate.detections import read_detections
from incdet.evaluate.evaluator import evaluate_detection_arrays
from incdet.evaluate.submission import read_submission
from incdet.postprocess.submission import write_submission
from incdet.structures import SkipReport


def _jitter(boxes: np.ndarray, amount: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    shift = rng.normal(0, 1, (len(boxes), 4)) * amount[:, None] * np.stack([w, h, w, h], 1)
    out = boxes + shift
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + 1)
    return out


def make_data(num_images: int, num_classes: int, dets_per_image: int, seed: int = 0
              ) -> tuple[list[Annotation], list[dict], list[str]]:
    """Ground truth with 1-4 objects per image and ``dets_per_image`` detections per image:
    jittered copies of the objects (some duplicates, some poor), same-class false positives
    nearby, and random boxes of random classes; scores rounded to 3 decimals, so many tie."""
    rng = np.random.default_rng(seed)
    classes = [f"class{c:03d}" for c in range(num_classes)]
    gts, records = [], []
    for i in range(num_images):
        width, height = int(rng.integers(300, 501)), int(rng.integers(300, 501))
        name = f"img{i:05d}.jpg"
        n = int(rng.integers(1, 5))
        wh = rng.uniform(8, 250, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (np.array([width, height]) - wh)
        boxes = np.round(np.concatenate([xy, xy + wh], 1))
        labels = rng.integers(0, num_classes, n)
        gts.append(Annotation(name, width, height, boxes, [classes[c] for c in labels]))

        copies = rng.integers(0, 4, n)  # 0-3 detections per object
        src = np.repeat(np.arange(n), copies)
        near = _jitter(boxes[src], rng.uniform(0.02, 0.3, len(src)), rng)
        near_labels = labels[src]
        k = max(dets_per_image - len(src), 0)
        same = min(k, int(rng.integers(0, 6)))  # same-class false positives elsewhere in the image
        rwh = rng.uniform(5, 300, (k, 2))
        rxy = rng.uniform(0, 1, (k, 2)) * np.maximum(np.array([width, height]) - rwh, 1)
        rand = np.concatenate([rxy, rxy + rwh], 1)
        rand_labels = rng.integers(0, num_classes, k)
        rand_labels[:same] = rng.choice(labels, same)
        det_boxes = np.concatenate([near, rand])[:dets_per_image]
        det_labels = np.concatenate([near_labels, rand_labels])[:dets_per_image]
        det_scores = np.round(np.concatenate([rng.uniform(0.3, 1.0, len(src)), rng.uniform(0, 0.7, k)]), 3)
        for box, label, score in zip(det_boxes.tolist(), det_labels.tolist(), det_scores.tolist()):
            x1, y1, x2, y2 = box
            records.append({"image_id": i, "file_name": name, "category_id": label + 1,
                            "category_name": classes[label], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return gts, records, classes


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t = time.perf_counter()
    gts, records, classes = make_data(args.images, args.classes, args.dets_per_image, args.seed)
    coco_gt = to_coco_gt(gts, classes)
    coco_results = to_coco_results(coco_gt, records, classes)
    print(f"data: {len(gts)} images, {sum(len(a.labels) for a in gts)} objects, {len(classes)} classes, "
          f"{len(records)} detections (made in {time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    ours = evaluate_detections(gts, records, classes, small_object_rule=False)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    ours_rule = evaluate_detections(gts, records, classes, small_object_rule=True)
    rule_s = time.perf_counter() - t

    t = time.perf_counter()
    evaluator = coco_evaluate(coco_gt, coco_results, 0.5, max_dets=args.dets_per_image)
    coco_s = time.perf_counter() - t
    coco_ap = coco_class_ap(evaluator)

    ours_ap = np.array([c.ap for c in ours.classes])
    both = ~np.isnan(ours_ap) & ~np.isnan(coco_ap)
    diff = np.abs(ours_ap[both] - coco_ap[both]).max() if both.any() else 0.0
    print(f"incdet evaluate_detections:          {ours_s:8.2f} s   mAP {100 * ours.mean_ap:.3f}%")
    print(f"incdet with the small-object rule:   {rule_s:8.2f} s   mAP {100 * ours_rule.mean_ap:.3f}%")
    print(f"pycocotools COCOeval (IoU 0.5 only): {coco_s:8.2f} s   mAP {100 * np.nanmean(coco_ap):.3f}% "
          f"(101-point interpolation)")
    print(f"largest per-class AP difference {diff:.4f} (bound for interpolation alone: 1/101 = {1 / 101:.4f})")
    ratio = coco_s / ours_s
    print(f"speed-up: incdet is {ratio:.1f}x as fast as pycocotools")
    files = _from_files(gts, records, classes)
    return {"incdet_s": ours_s, "pycocotools_s": coco_s, "ratio": ratio, "max_ap_difference": float(diff),
            "incdet_map": ours.mean_ap, "pycocotools_map": float(np.nanmean(coco_ap)), **files}


def _from_files(gts: list[Annotation], records: list[dict], classes: list[str]) -> dict[str, float]:
    """The same detections evaluated from a COCO-results JSON and from a devkit submission file."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path, sub_path = Path(tmp) / "dets.json", Path(tmp) / "dets.txt"
        json_path.write_text(json.dumps(records))
        image_of = {a.filename: i for i, a in enumerate(gts)}
        boxes = np.array([r["bbox"] for r in records], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        write_submission(sub_path, [image_of[r["file_name"]] + 1 for r in records],
                         [r["category_id"] for r in records], [r["score"] for r in records], boxes)
        t = time.perf_counter()
        from_json = evaluate_detections(gts, read_detections(str(json_path)), classes)
        json_s = time.perf_counter() - t
        t = time.perf_counter()
        report = SkipReport()
        dets, lines = read_submission(sub_path, [a.filename for a in gts], {a.filename: i + 1 for i, a in
                                                                          enumerate(gts)},
                                      classes, {i + 1: c for i, c in enumerate(classes)}, report)
        from_sub = evaluate_detection_arrays(gts, dets, lines, classes, report=report)
        sub_s = time.perf_counter() - t
    print(f"from a COCO-results JSON file:       {json_s:8.2f} s   mAP {100 * from_json.mean_ap:.3f}%")
    print(f"from a devkit submission file:       {sub_s:8.2f} s   mAP {100 * from_sub.mean_ap:.3f}% "
          f"({sub_s / json_s:.2f}x the JSON time)")
    return {"json_file_s": json_s, "submission_file_s": sub_s, "json_file_map": from_json.mean_ap,
            "submission_file_map": from_sub.mean_ap}


if __name__ == "__main__":
    sys.exit(0 if main()["ratio"] >= 1.0 else 1)
