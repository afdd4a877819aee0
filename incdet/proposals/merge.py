"""Selective search + MultiBox, as the GoogLeNet detection entry combined them, with provenance.

Every selective-search box is kept; each MultiBox box is added unless it repeats one (IoU >=
``dedup_iou``), in which case the selective-search box it repeats is marked as proposed by both
stages. So the merged set covers at least what selective search covers, and ``source`` says for
each box which stage proposed it.

Order (proposals are ranked, so "the first N" is a cheaper setting): MultiBox's first ``LEAD``
boxes in its score order, then the rest of both lists spread evenly through each other, each in its
own order, so that both run out together (a box both proposed takes the earlier of its places).
MultiBox's scores rank its boxes well (on the demo its first 10 cover 0.74 of the objects,
selective search's pseudo-random first 10 about 0.3), but its value is spent within a few dozen
boxes, while selective search keeps finding objects for hundreds: all MultiBox boxes first (the
old order) left the merged first 200-300 below selective search's own, and a plain 1:1
alternation the merged first 10 below MultiBox's. With this order the merged recall@N at IoU 0.5
and 0.7 was at least each source's at every budget of the recall table on the demo val and test
splits (docs/proposals.md, "Merged ranking").
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from incdet.structures import BOTH, MULTIBOX, SOURCES, Proposals
from incdet.structures import SELECTIVE_SEARCH as SS

LEAD = 10  # MultiBox boxes that come first: the smallest budget the recall table reports


def _interleaved(mb_rank: np.ndarray, ss_rank: np.ndarray, num_ss: int) -> np.ndarray:
    """Merged order of entries with a rank in the MultiBox list and/or the selective-search list (inf
    where absent): MultiBox's first LEAD, then the rest of both spread evenly, MultiBox first on ties."""
    num_mb = int(np.isfinite(mb_rank).sum())
    step = num_ss / (num_mb - LEAD) if num_mb > LEAD else 1.0
    mb_key = np.where(mb_rank < LEAD, mb_rank - LEAD, (mb_rank - LEAD) * step)  # inf stays inf
    return np.argsort(np.minimum(mb_key, ss_rank + 0.5), kind="stable")


def merge_proposals(ss_boxes: np.ndarray, multibox_boxes: np.ndarray, dedup_iou: float = 0.7) -> Proposals:
    """Merge one image's selective-search boxes (ranked) with its MultiBox boxes (already top-N, score
    order), all float (N, 4) xyxy pixels, in the interleaved order described above."""
    if not 0 < dedup_iou <= 1:
        raise ValueError(f"dedup_iou must be in (0, 1], got {dedup_iou}")
    ss = np.asarray(ss_boxes, np.float32).reshape(-1, 4)
    mb = np.asarray(multibox_boxes, np.float32).reshape(-1, 4)
    iou = box_iou(torch.from_numpy(mb), torch.from_numpy(ss)).numpy() if len(ss) and len(mb) else np.zeros((len(mb), len(ss)))

    boxes, source, ss_rank = [], [], []
    placed = np.zeros(len(ss), bool)
    for i in range(len(mb)):
        j = int(iou[i].argmax()) if len(ss) else -1
        if j < 0 or iou[i, j] < dedup_iou:
            boxes.append(mb[i])
            source.append(MULTIBOX)
            ss_rank.append(np.inf)
        elif not placed[j]:
            # The selective-search copy is kept, so the merged set stays a superset of selective search.
            placed[j] = True
            boxes.append(ss[j])
            source.append(BOTH)
            ss_rank.append(j)
        # else: a repeat of a selective-search box an earlier MultiBox box already placed
    rest = np.flatnonzero(~placed)
    merged = np.concatenate([np.array(boxes, np.float32).reshape(-1, 4), ss[rest]])
    mb_rank = np.concatenate([np.arange(len(boxes), dtype=np.float64), np.full(len(rest), np.inf)])
    order = _interleaved(mb_rank, np.concatenate([np.array(ss_rank, np.float64), rest]), len(ss))
    codes = np.array([SOURCES.index(name) for name in source] + [SOURCES.index(SS)] * len(rest), np.uint8)
    return Proposals(merged[order], codes[order])
