"""Ground-truth crops of a detection dataset as an ImageFolder tree, for ``incdet train backbone``.

    python tools/detection_crops.py demo/train/annotations OUT/train
    python tools/detection_crops.py demo/val/annotations OUT/val

Writes ``OUT/<split>/<class>/<image>_<object>.png``: each object's box, dilated as the region
classifier's warp dilates it (16 px of context at 224 px), cut from the image (the part outside the
image is left out). ``incdet train backbone`` with ``data: {format: folder, root: OUT}`` then
pretrains a classification backbone on them, which ``model.init`` of region training starts from
(docs/training.md measures what that buys on the demo). Any ground truth ``load_dataset`` reads works.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from incdet.boxes import add_context, clip_and_check
from incdet.data.dataset import load_dataset
from incdet.io import read_image, write_image
from incdet.regions.warp import RCNN_CONTEXT_PAD, RCNN_INPUT_SIZE


def write_crops(annotations: str | Path, out: Path) -> int:
    """Crop every object of the ground truth at ``annotations`` into ``out/<class>/``; returns the count."""
    dataset = load_dataset(annotations)
    count = 0
    for ann in dataset.annotations:
        if not len(ann.boxes):
            continue
        image = read_image(dataset.image_path(ann))
        height, width = image.shape[:2]
        boxes, usable = clip_and_check(add_context(torch.as_tensor(ann.boxes), RCNN_INPUT_SIZE, RCNN_CONTEXT_PAD), width, height)
        for i, (box, label) in enumerate(zip(boxes.round().int().tolist(), ann.labels)):
            if usable[i]:
                x1, y1, x2, y2 = box
                write_image(out / label / f"{Path(ann.filename).stem}_{i}.png", image[y1:y2, x1:x2])
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", help="ground truth in any format load_dataset reads")
    parser.add_argument("out", type=Path, help="output folder: OUT/<class>/*.png")
    args = parser.parse_args()
    print(f"{write_crops(args.annotations, args.out)} crops written to {args.out}")


if __name__ == "__main__":
    main()
