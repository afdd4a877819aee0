"""Proposal quality of one or several proposal sets on one ground truth, as a table and a plot.

The GoogLeNet entry's claim is about a trade-off (fewer boxes, more coverage), so every set is
reported with its box count next to coverage@0.5, best overlaps and recall against the number of
proposals kept per image. :func:`quality_report` is the one report: ``incdet propose --gt`` prints
it for its own proposals, ``--report`` for selective search, MultiBox and their merge side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from incdet.data.records import Annotation, Dataset
from incdet.io import atomic_path
from incdet.proposals.quality import best_overlaps, coverage, mabo, recall_at

TABLE_COUNTS = (10, 50, 100, 200, 300, 500, 1000, 2000)
IOUS = (0.5, 0.7)


@dataclass(frozen=True)
class ProposalStats:
    """Quality of one proposal set; ``recall[iou][i]`` is recall with the first ``counts[i]`` boxes per image."""

    name: str
    per_image: float
    most: int
    coverage: float
    abo: float
    mabo: float
    counts: tuple[int, ...]
    recall: dict[float, np.ndarray]


def proposal_stats(
    name: str,
    proposals: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    labels: Sequence[Sequence[str]],
    counts: Sequence[int],
) -> ProposalStats:
    """Measure one set (one (N, 4) array per image, ranked) against the same-ordered ground truth."""
    return ProposalStats(
        name=name,
        per_image=float(np.mean([len(p) for p in proposals])),
        most=max(len(p) for p in proposals),
        coverage=coverage(proposals, ground_truth, 0.5),
        abo=float(best_overlaps(proposals, ground_truth).mean()),
        mabo=mabo(proposals, ground_truth, labels),
        counts=tuple(int(n) for n in counts),
        recall={iou: recall_at(proposals, ground_truth, iou, counts) for iou in IOUS},
    )


def table_counts(largest: int) -> list[int]:
    """The table's columns: the usual budgets below ``largest``, then ``largest`` itself (all boxes)."""
    return [n for n in TABLE_COUNTS if n < largest] + [largest]


def report_counts(largest: int, points: int = 40) -> list[int]:
    """Budgets to measure: log-spaced from 1 to ``largest`` for the curves, plus the table's columns."""
    curve = {int(round(n)) for n in np.geomspace(1, max(1, largest), points)}
    return sorted(curve | set(table_counts(largest)))


def format_report(stats: Sequence[ProposalStats], num_gt: int, num_images: int) -> str:
    """A plain-text table (Markdown-compatible) of every set, then recall against the number of boxes
    for the columns of :func:`table_counts` (every set must be measured at the same counts)."""
    width = max(len(s.name) for s in stats)
    lines = [
        f"ground truth: {num_gt} boxes in {num_images} images",
        "",
        f"| {'proposals':<{width}} | per image | coverage@0.5 |   ABO |  MABO |",
        f"|{'-' * (width + 2)}|----------:|-------------:|------:|------:|",
    ]
    for s in stats:
        lines.append(f"| {s.name:<{width}} | {s.per_image:9.1f} | {s.coverage:12.3f} | {s.abo:5.3f} | {s.mabo:5.3f} |")
    columns = table_counts(max(s.most for s in stats))
    for iou in IOUS:
        lines += ["", f"recall@{iou} with the first N proposals per image", ""]
        lines.append(f"| {'N':<{width}} | " + " | ".join(f"{n:>5d}" for n in columns) + " |")
        lines.append(f"|{'-' * (width + 2)}|" + "|".join("------:" for _ in columns) + "|")
        for s in stats:
            recall = dict(zip(s.counts, s.recall[iou]))
            lines.append(f"| {s.name:<{width}} | " + " | ".join(f"{recall[n]:5.3f}" for n in columns) + " |")
    return "\n".join(lines)


def plot_recall(path: str | Path, stats: Sequence[ProposalStats], title: str = "") -> None:
    """Recall at IoU 0.5 and 0.7 against proposals per image (log axis), one line per set, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(IOUS), figsize=(5.5 * len(IOUS), 4.2), sharey=True)
    for ax, iou in zip(axes, IOUS):
        for s in stats:
            # Past a set's largest box count its curve is flat; stop it there so the count stays readable.
            shown = np.array(s.counts) <= s.most
            ax.plot(np.array(s.counts)[shown], s.recall[iou][shown], label=f"{s.name} ({s.per_image:.0f}/image)")
        ax.set_xscale("log")
        ax.set_xlabel("proposals per image (first N)")
        ax.set_title(f"recall at IoU {iou}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of ground-truth boxes covered")
    axes[0].set_ylim(0, 1)
    axes[-1].legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _annotation_finder(dataset: Dataset) -> Mapping[str, Annotation]:
    """Annotations by image path without its suffix (``sub/0001``) and, where unique, by bare stem:
    an image key matches the annotation of the same path, else of the same file stem (VOC's XML and
    its image share a stem; an annotation's ``filename`` may name another extension or folder)."""
    by_path = {str(PurePosixPath(a.filename).with_suffix("")): a for a in dataset.annotations}
    stems: dict[str, list[Annotation]] = {}
    for a in dataset.annotations:
        stems.setdefault(PurePosixPath(a.filename).stem, []).append(a)
    return {**{stem: found[0] for stem, found in stems.items() if len(found) == 1}, **by_path}


def _find(finder: Mapping[str, Annotation], key: str) -> Annotation | None:
    path = PurePosixPath(key)
    return finder.get(str(path.with_suffix(""))) or finder.get(path.stem)


def quality_report(
    sets: Mapping[str, Mapping[str, np.ndarray]], dataset: Dataset, plot: str | Path | None = None, title: str = ""
) -> str:
    """The report text for named proposal sets (each ``{image key: (N, 4) xyxy boxes}``, ranked) on
    ``dataset``'s ground truth, and the recall plot at ``plot``.

    The images of the first set that every other set has and the ground truth annotates are
    measured, so every row is measured on the same ground truth; the text says how many were left out.
    """
    finder = _annotation_finder(dataset)
    first = next(iter(sets.values()))
    keys = sorted(k for k in first if _find(finder, k) is not None and all(k in s for s in sets.values()))
    lines = []
    if len(keys) < len(first):
        lines.append(f"{len(first) - len(keys)} image(s) lack an annotation or boxes in some set; measured on the other {len(keys)}")
    ground_truth = [_find(finder, k) for k in keys]
    num_gt = sum(len(a.boxes) for a in ground_truth)
    if not num_gt:
        return "\n".join(lines + ["no ground-truth boxes for these images; no quality report"])
    counts = report_counts(max(len(s[k]) for s in sets.values() for k in keys))
    stats = [proposal_stats(name, [s[k] for k in keys], [a.boxes for a in ground_truth], [a.labels for a in ground_truth], counts)
             for name, s in sets.items()]
    if plot is not None:
        plot_recall(plot, stats, title)
    return "\n".join(lines + [format_report(stats, num_gt, len(keys))])
