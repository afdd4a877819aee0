"""Selective search + MultiBox, as the GoogLeNet detection entry combined them, with provenance.

Every selective-search box is kept; each MultiBox box is added unless it repeats one (IoU >=
``dedup_iou``), in which case the selective-search box it repeats is marked as proposed by both
stages. So the merged set covers at least what selective search covers, and ``source`` says for
each box which stage proposed it.

Order (proposals are ranked, so "the first N" is a cheaper setting): boxes MultiBox proposed, in
its score order (a repeated box takes the MultiBox rank), then the other selective-search boxes
in their own order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

SS, MULTIBOX, BOTH = "selective_search", "multibox", "both"
SOURCES = (SS, MULTIBOX, BOTH)


@dataclass(frozen=True)
class MergedProposals:
    """``boxes`` float32 (N, 4) xyxy pixels; ``source[i]`` is one of SOURCES for ``boxes[i]``."""

    boxes: np.ndarray
    source: np.ndarray

    def counts(self) -> dict[str, int]:
        """Boxes per source, and the total."""
        return {**{name: int((self.source == name).sum()) for name in SOURCES}, "total": len(self.boxes)}


def merge_proposals(ss_boxes: np.ndarray, multibox_boxes: np.ndarray, dedup_iou: float = 0.7) -> MergedProposals:
    """Merge one image's selective-search boxes with its MultiBox boxes (already top-N, score order)."""
    if not 0 < dedup_iou <= 1:
        raise ValueError(f"dedup_iou must be in (0, 1], got {dedup_iou}")
    ss = np.asarray(ss_boxes, np.float32).reshape(-1, 4)
    mb = np.asarray(multibox_boxes, np.float32).reshape(-1, 4)
    iou = box_iou(torch.from_numpy(mb), torch.from_numpy(ss)).numpy() if len(ss) and len(mb) else np.zeros((len(mb), len(ss)))

    boxes, source = [], []
    placed = np.zeros(len(ss), bool)
    for i in range(len(mb)):
        j = int(iou[i].argmax()) if len(ss) else -1
        if j < 0 or iou[i, j] < dedup_iou:
            boxes.append(mb[i])
            source.append(MULTIBOX)
        elif not placed[j]:
            # The selective-search copy is kept, so the merged set stays a superset of selective search.
            placed[j] = True
            boxes.append(ss[j])
            source.append(BOTH)
        # else: a repeat of a selective-search box an earlier MultiBox box already placed
    rest = ss[~placed]
    merged = np.concatenate([np.array(boxes, np.float32).reshape(-1, 4), rest])
    return MergedProposals(merged, np.array(source + [SS] * len(rest), dtype=object))
