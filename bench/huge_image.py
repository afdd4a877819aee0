"""A 10000x10000 photo against a 500 px one with the same proposals: seconds and peak RSS of each.

    flock /tmp/incdet-bench.lock python bench/huge_image.py [--size 10000] [--threads 1]

Both images are one demo photo upscaled (so the big one has real content, not noise), square so a
single factor maps one onto the other. The proposals are selective search's on the 500 px image,
and exactly those boxes times ``size / 500`` on the big one, given to :class:`incdet.Pipeline` as
``proposals=`` (no MultiBox), so both runs classify the same number of regions. Each image is
read and detected in a subprocess of its own, which reports its own seconds and peak RSS (VmHWM of
/proc/self/status: unlike ``ru_maxrss``, which Linux carries over from the parent through fork and
exec, it starts afresh with the new program), so the big image's peak is not hidden by the small one's.
Target (issue 16): the big photo in at most 3x the time of the small one, within 2 GB of peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

SMALL = 500
DEMO_IMAGE = Path("/tmp/incdet-bench-demo/test/images/0000.jpg")


def child(image_path: str, boxes_path: str, threads: int) -> None:
    """Run in a subprocess of its own: build the pipeline, then time reading and detecting one image."""
    from incdet.io import read_image
    from incdet.pipeline import Pipeline
    from incdet.structures import Proposals

    torch.set_num_threads(threads)
    pipeline = Pipeline(multibox=None, device="cpu")
    boxes = torch.from_numpy(np.load(boxes_path))
    before = peak_rss_mb()
    start = time.perf_counter()
    image = read_image(image_path)
    read = time.perf_counter() - start
    detections = pipeline([image], [Proposals.from_boxes(boxes)])[0]
    total = time.perf_counter() - start
    print(json.dumps({"read_s": read, "detect_s": total - read, "total_s": total, "detections": len(detections),
                      "proposals": len(boxes), "rss_before_mb": before,
                      "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: this benchmark needs Linux")


def run_child(image: Path, boxes: Path, threads: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(image), str(boxes), "--threads", str(threads)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"child failed on {image}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="side of the big image (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each run (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each image; the best is reported (default: %(default)s)")
    parser.add_argument("--child", nargs=2, metavar=("IMAGE", "BOXES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.threads)

    from incdet.cli import main as incdet
    from incdet.io import read_image, write_image
    from incdet.proposals.selective_search import search_proposals
    from incdet.proposals.settings import SearchSettings

    if not DEMO_IMAGE.is_file():
        incdet(["data", "demo", "--out", str(DEMO_IMAGE.parents[2])])
    photo = read_image(DEMO_IMAGE)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = cv2.resize(photo, (SMALL, SMALL), interpolation=cv2.INTER_CUBIC)
        big = cv2.resize(photo, (args.size, args.size), interpolation=cv2.INTER_CUBIC)
        write_image(tmp / "small.png", small)
        cv2.imwrite(str(tmp / "big.jpg"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        del big
        boxes = search_proposals(small, SearchSettings()).boxes.numpy()
        np.save(tmp / "small.npy", boxes)
        np.save(tmp / "big.npy", boxes * (args.size / SMALL))
        runs = {}
        for name, image in (("small", tmp / "small.png"), ("big", tmp / "big.jpg")):
            results = [run_child(image, tmp / f"{name}.npy", args.threads) for _ in range(args.repeat)]
            runs[name] = min(results, key=lambda r: r["total_s"])
    print(f"{len(boxes)} proposals on each image, shipped demo classifier, {args.threads} torch thread(s), best of {args.repeat}")
    for name, side in (("small", SMALL), ("big", args.size)):
        r = runs[name]
        print(f"{side:>6} x {side:<6} read {r['read_s']:7.2f} s  detect {r['detect_s']:7.2f} s  total {r['total_s']:7.2f} s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB (after loading the model: {r['rss_before_mb']:.0f} MB)  "
              f"{r['detections']} detections")
    detect = runs["big"]["detect_s"] / runs["small"]["detect_s"]
    total = runs["big"]["total_s"] / runs["small"]["total_s"]
    print(f"time ratio big / small: detect {detect:.2f}x (target <= 3x), with reading the file {total:.2f}x; "
          f"big peak RSS {runs['big']['peak_rss_mb'] / 1024:.2f} GB (target <= 2 GB)")


if __name__ == "__main__":
    main()
