"""``incdet propose --multibox/--report``: the MultiBox job checked before the slow search, and the
mean box counts per source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from incdet.errors import InputError
from incdet.multibox.multibox_file import load_multibox
from incdet.multibox.propose import MultiBoxSettings
from incdet.proposals.files import load_proposals
from incdet.structures import SOURCES
from incdet.weights import DEMO_MULTIBOX


def describe_counts(counts: list[dict[str, int]]) -> str:
    """Mean boxes per image of the merged set and of each source (from ``Proposals.counts()``), in one line."""
    mean = {key: np.mean([c[key] for c in counts]) for key in (*SOURCES, "total")}
    return (
        f"merged proposals/image: {mean['total']:.1f} = {mean['selective_search']:.1f} selective search only "
        f"+ {mean['both']:.1f} proposed by both + {mean['multibox']:.1f} MultiBox only"
    )


@dataclass(frozen=True)
class MultiBoxJob:
    """What ``propose --multibox/--report`` will do, checked before the slow selective search runs."""

    checkpoint: Path
    settings: MultiBoxSettings
    baselines: dict[str, dict[str, np.ndarray]]


def prepare_multibox(checkpoint: Path | None, top_n: int, dedup_iou: float, baselines: list[Path]) -> MultiBoxJob:
    """Resolve the checkpoint (default: the shipped demo network) and read it and the baseline files,
    so that a bad one fails in seconds rather than after minutes of selective search."""
    if checkpoint is None:
        if not DEMO_MULTIBOX.is_file():
            raise InputError(DEMO_MULTIBOX, "no shipped MultiBox network; pass --multibox CKPT (see `incdet train multibox`)")
        checkpoint = DEMO_MULTIBOX
    load_multibox(checkpoint)
    try:
        settings = MultiBoxSettings(top_n=top_n, dedup_iou=dedup_iou)
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    return MultiBoxJob(checkpoint, settings, {f"baseline ({path.name})": load_proposals(path) for path in baselines})
