"""Ground-truth crops of a detection dataset as an ImageFolder tree, to pretrain a backbone on.

``OUT/<class>/<image>_<object>.png``: each object's box, dilated as the region classifier's warp
dilates it (16 px of context at 224 px), cut from the image (the part outside the image is left
out). ``incdet train backbone`` with ``data: {format: folder, root: ...}`` pretrains on them, and
``model.init`` of region training starts from that backbone (docs/training.md measures what it
buys on the demo); ``incdet train detector`` does all three. Any ground truth ``load_dataset``
reads works.
"""

from __future__ import annotations

from pathlib import Path

import torch

from incdet.boxes import add_context, clip_and_check
from incdet.data.records import Dataset
from incdet.io import read_image, write_image
from incdet.regions.warp import RCNN_CONTEXT_PAD, RCNN_INPUT_SIZE


def write_crops(dataset: Dataset, out: Path) -> int:
    """Crop every object of ``dataset`` into ``out/<class>/``; returns the count."""
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
