"""Seconds per image of each detection stage, and batched vs per-crop region classification.

    python bench/detect.py [--images demo/test/images] [--model incdet/weights/demo_regions.pt] [--limit 10]

The naive baseline is what an R-CNN re-implementation often does: cut each (context-padded)
crop with numpy, cv2.resize it, and run the network on one crop at a time. Both paths score
the same proposals with the same model in this process, so the ratio is like for like.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from incdet.boxes import add_context
from incdet.classify.checkpoint import load_region_classifier
from incdet.classify.ensemble import load_ensemble
from incdet.devices import resolve_device
from incdet.io import list_images, read_image
from incdet.postprocess.nms import select_detections
from incdet.proposals.selective_search import selective_search
from incdet.regions.warp import warp_image_regions
from incdet.structures import Proposals, RegionScores
from incdet.transforms import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor
from incdet.weights import DEMO_REGION_MODELS


def naive_scores(image: np.ndarray, boxes: np.ndarray, model: torch.nn.Module, size: int, pad: int) -> torch.Tensor:
    """Per-crop loop: integer crop, cv2.resize, normalise, forward one crop at a time."""
    padded = add_context(torch.from_numpy(boxes), size, pad).round().int().tolist()
    height, width = image.shape[:2]
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    scores = []
    for x1, y1, x2, y2 in padded:
        # Mean-fill outside the image, as R-CNN does, by padding the cut with the mean colour.
        canvas = np.empty((y2 - y1, x2 - x1, 3), np.float32)
        canvas[:] = mean * 255
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        crop = (cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR) / 255.0 - mean) / std
        with torch.inference_mode():
            scores.append(model(torch.from_numpy(crop).permute(2, 0, 1)[None]).logits.softmax(1))
    return torch.cat(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="demo/test/images")
    parser.add_argument("--model", default=str(DEMO_REGION_MODELS[0]))
    parser.add_argument("--limit", type=int, default=10, help="images to time (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: %(default)s)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    spec, model = load_region_classifier(args.model, device)
    ensemble = load_ensemble([args.model], device)
    paths = list_images(args.images)[: args.limit]
    seconds = dict.fromkeys(("proposals", "warp", "classify", "nms"), 0.0)
    batched_s = naive_s = 0.0
    crops_total = 0

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for path in paths:
        image = read_image(path)
        start = time.perf_counter()
        proposals = selective_search(image)
        seconds["proposals"] += time.perf_counter() - start
        boxes = torch.from_numpy(proposals).to(device)
        crops_total += len(boxes)

        # What `incdet detect` runs: the ensemble warps and classifies in batches.
        start = time.perf_counter()
        probs = ensemble(image_to_tensor(image, device), boxes).probs
        sync()
        classified = time.perf_counter()
        select_detections(Proposals.from_boxes(boxes), RegionScores(probs))
        sync()
        seconds["nms"] += time.perf_counter() - classified
        batched = classified - start
        batched_s += batched
        # The warp alone, to split warp+classify into its two stages.
        start = time.perf_counter()
        warp_image_regions(image_to_tensor(image, device), boxes, spec.input_size, spec.context_pad)
        sync()
        warp_s = time.perf_counter() - start
        seconds["warp"] += warp_s
        seconds["classify"] += batched - warp_s

        start = time.perf_counter()
        naive = naive_scores(image, proposals, model, spec.input_size, spec.context_pad)
        sync()
        naive_s += time.perf_counter() - start
        # Same model, same boxes: the two paths must agree up to interpolation details.
        agreement = (naive.argmax(1).to(device) == probs.argmax(1)).float().mean().item()

    n = len(paths)
    print(f"device {device}, {n} images, {crops_total / n:.0f} proposals/image, model {spec.arch} w{spec.width:g} @ {spec.input_size}px")
    print("seconds per image by stage: " + ", ".join(f"{k} {v / n:.4f}" for k, v in seconds.items()))
    print(f"batched warp+classify: {crops_total / batched_s:9.1f} crops/s")
    print(f"naive per-crop loop:   {crops_total / naive_s:9.1f} crops/s")
    print(f"speed-up batched / naive: {naive_s / batched_s:.1f}x (target >= 10x); top-1 agreement on the last image {agreement:.3f}")


if __name__ == "__main__":
    main()
