"""Selective-search backends side by side: seconds per image on one core, boxes, and proposal quality.

    python bench/proposals.py [--demo demo] [--limit N]

Both backends (OpenCV-contrib and the pure-Python ``selectivesearch`` package) run at superpixel
scale 1 (R-CNN) and 2 (GoogLeNet) on the demo test split, where ground truth gives coverage@0.5,
recall@0.7 and MABO, and on the photos scikit-image ships (at their own sizes, searched at R-CNN's
500 px width). Everything runs in this one process on one core (OpenCV and torch threads 1), and the
four settings take turns on every image, so load from other jobs hits them alike and each ratio
compares like with like. Make the demo with ``incdet data demo --out demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch start their pools

import cv2
import numpy as np
import skimage.data
import torch

from incdet.data.voc import read_voc_dir
from incdet.io import read_image
from incdet.proposals.quality import coverage, mabo
from incdet.proposals.selective_search import BACKENDS, selective_search

SCALES = (1.0, 2.0)
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
SETTINGS = [(backend, scale) for backend in BACKENDS for scale in SCALES]


def run(images: list[np.ndarray]) -> dict[tuple[str, float], tuple[float, list[np.ndarray]]]:
    """Per setting: seconds per image and the proposals of every image."""
    seconds = dict.fromkeys(SETTINGS, 0.0)
    boxes: dict[tuple[str, float], list[np.ndarray]] = {s: [] for s in SETTINGS}
    for i, image in enumerate(images):
        turn = SETTINGS[i % len(SETTINGS):] + SETTINGS[: i % len(SETTINGS)]  # who goes first rotates
        for backend, scale in turn:
            start = time.perf_counter()
            boxes[backend, scale].append(selective_search(image, scale, backend=backend))
            seconds[backend, scale] += time.perf_counter() - start
    return {s: (seconds[s] / len(images), boxes[s]) for s in SETTINGS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="demo dataset folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="at most N images of each set (default: all)")
    args = parser.parse_args()
    annotations_dir = args.demo / "test" / "annotations"
    if not annotations_dir.is_dir():
        sys.exit(f"{annotations_dir}: no demo test split; make it with `incdet data demo --out {args.demo}`")
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    annotations = read_voc_dir(annotations_dir)[: args.limit]
    demo = [read_image(args.demo / "test" / "images" / a.filename) for a in annotations]
    ground_truth, labels = [a.boxes for a in annotations], [a.labels for a in annotations]
    photo_paths = [Path(skimage.data.data_dir) / name for name in PHOTOS if (Path(skimage.data.data_dir) / name).is_file()]
    photo_paths = photo_paths[: args.limit]
    photos = [read_image(path) for path in photo_paths]
    for backend in BACKENDS:  # imports and first-call set-up are not part of the timing
        selective_search(demo[0], backend=backend)

    results = {"demo": run(demo), "photos": run(photos)}
    print(f"one core; demo test split: {len(demo)} images ({demo[0].shape[1]}x{demo[0].shape[0]}), "
          f"{sum(len(g) for g in ground_truth)} objects; scikit-image photos: "
          + ", ".join(f"{p.stem} {im.shape[1]}x{im.shape[0]}" for p, im in zip(photo_paths, photos)))
    print()
    print("| images | backend         | scale | s/image | boxes/image | coverage@0.5 | recall@0.7 |  MABO |")
    print("|--------|-----------------|------:|--------:|------------:|-------------:|-----------:|------:|")
    quality = {}
    for name, result in results.items():
        for backend, scale in SETTINGS:
            seconds, boxes = result[backend, scale]
            per_image = np.mean([len(b) for b in boxes])
            cells = f"{'-':>12} | {'-':>10} | {'-':>5} |"
            if name == "demo":
                q = coverage(boxes, ground_truth, 0.5), coverage(boxes, ground_truth, 0.7), mabo(boxes, ground_truth, labels)
                quality[backend, scale] = q
                cells = f"{q[0]:12.3f} | {q[1]:10.3f} | {q[2]:5.3f} |"
            print(f"| {name:<6} | {backend:<15} | {scale:5g} | {seconds:7.3f} | {per_image:11.1f} | {cells}")
    print()
    for name, result in results.items():
        speed = [result["selectivesearch", s][0] / result["opencv", s][0] for s in SCALES]
        ratio = {b: np.mean([len(x) for x in result[b, 2.0][1]]) / np.mean([len(x) for x in result[b, 1.0][1]]) for b in BACKENDS}
        print(f"{name:<6}: opencv is {speed[0]:.1f}x (scale 1) and {speed[1]:.1f}x (scale 2) as fast as selectivesearch "
              f"per core (target >= 3x); boxes at scale 2 / scale 1: opencv {ratio['opencv']:.2f}, "
              f"selectivesearch {ratio['selectivesearch']:.2f} (target about 0.6)")
    print()
    for scale in SCALES:
        ours, theirs = quality["opencv", scale], quality["selectivesearch", scale]
        verdict = [f"{what} {o:.3f} vs {t:.3f} ({'met' if o >= t else 'MISSED'})" for what, o, t in
                   (("coverage@0.5", ours[0], theirs[0]), ("recall@0.7", ours[1], theirs[1]))]
        print(f"target at scale {scale:g}, opencv at least as good as selectivesearch on the demo: " + "; ".join(verdict))


if __name__ == "__main__":
    main()
