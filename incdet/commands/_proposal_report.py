"""``incdet propose --multibox/--report``: merge MultiBox boxes into selective search's, record where
each box came from, and compare selective search, MultiBox, merged (and a baseline) on ground truth."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from incdet.data.voc import read_voc_dir
from incdet.errors import InputError
from incdet.io import write_text
from incdet.multibox.checkpoint import load_multibox
from incdet.multibox.propose import MultiBoxSettings, merged_image_proposals
from incdet.proposals.files import load_proposals
from incdet.proposals.merge import SOURCES, MergedProposals
from incdet.proposals.report import (
    format_report,
    plot_recall,
    proposal_stats,
    report_counts,
)
from incdet.weights import DEMO_MULTIBOX


def sources_path(out: Path) -> Path:
    """Where the provenance of ``out``'s merged boxes is written: ``NAME.sources.json`` beside it."""
    return out.with_name(f"{out.stem}.sources.json")


def write_sources(path: Path, merged: Mapping[str, MergedProposals]) -> None:
    """``{file_name: {"counts": {...}, "source": [one of SOURCES per box, in box order]}}``, one image a line."""
    lines = [
        f"{json.dumps(name)}: {json.dumps({'counts': m.counts(), 'source': [str(s) for s in m.source]})}"
        for name, m in merged.items()
    ]
    write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


def describe_counts(merged: Mapping[object, MergedProposals]) -> str:
    """Mean boxes per image of the merged set and of each source, in one line."""
    counts = [m.counts() for m in merged.values()]
    mean = {key: np.mean([c[key] for c in counts]) for key in (*SOURCES, "total")}
    return (
        f"merged proposals/image: {mean['total']:.1f} = {mean['selective_search']:.1f} selective search only "
        f"+ {mean['both']:.1f} proposed by both + {mean['multibox']:.1f} MultiBox only"
    )


def compare_on_ground_truth(
    sets: Mapping[str, Mapping[str, np.ndarray]], gt_dir: Path, plot: Path | None = None, title: str = ""
) -> str:
    """The report text for named proposal sets (each ``{file name: boxes}``) on a VOC annotation folder.

    The images of the first set that every other set has and that have an annotation are
    measured, so every row is measured on the same ground truth; the text says how many were left out.
    """
    annotations = {Path(a.filename).stem: a for a in read_voc_dir(gt_dir)}  # XML and image share a stem
    first = next(iter(sets.values()))
    names = sorted(n for n in first if Path(n).stem in annotations and all(n in s for s in sets.values()))
    lines = []
    if len(names) < len(first):
        lines.append(f"{len(first) - len(names)} image(s) lack an annotation in {gt_dir} or boxes in some set; measured on the other {len(names)}")
    if not names:
        return "\n".join(lines)
    ground_truth = [annotations[Path(n).stem].boxes for n in names]
    num_gt = sum(len(g) for g in ground_truth)
    if not num_gt:
        return "\n".join(lines + [f"no ground-truth boxes for these images in {gt_dir}; no quality report"])
    labels = [annotations[Path(n).stem].labels for n in names]
    counts = report_counts(max(len(s[n]) for s in sets.values() for n in names))
    stats = [proposal_stats(label, [s[n] for n in names], ground_truth, labels, counts) for label, s in sets.items()]
    if plot is not None:
        plot_recall(plot, stats, title)
    return "\n".join(lines + [format_report(stats, num_gt, len(names))])


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


def add_multibox_and_report(
    ss: Mapping[Path, np.ndarray], ss_name: str, out: Path, job: MultiBoxJob, gt_dir: Path | None, plot: Path | None
) -> dict[Path, np.ndarray]:
    """Merge MultiBox boxes into ``ss``, write their sources beside ``out``, and with ``gt_dir`` print
    the comparison (``job``'s baselines included) and write its plot. Returns the merged boxes
    (images MultiBox could not read are left out)."""
    with tqdm(total=len(ss), unit="img", desc="MultiBox", file=sys.stderr) as bar:
        merged, run = merged_image_proposals(list(ss), ss, job.checkpoint, job.settings, on_done=lambda _: bar.update())
    for message in run.skipped.messages():
        print(f"skipped {message}", file=sys.stderr)
    if merged:
        print(describe_counts(merged))
        write_sources(sources_path(out), {path.name: m for path, m in merged.items()})
        print(f"wrote the source of every merged box to {sources_path(out)}")
    if gt_dir is not None and merged:
        sets = {
            ss_name: {path.name: ss[path] for path in merged},
            f"MultiBox top-{job.settings.top_n}": {path.name: run.proposals[path][0] for path in merged},
            "merged": {path.name: m.boxes for path, m in merged.items()},
            **job.baselines,
        }
        plot = plot or out.with_name(f"{out.stem}_recall.png")
        print(compare_on_ground_truth(sets, gt_dir, plot, f"{gt_dir}: proposals per image vs recall"))
        print(f"wrote the recall plot to {plot}")
    return {path: m.boxes for path, m in merged.items()}
