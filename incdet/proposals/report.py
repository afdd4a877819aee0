"""Side-by-side proposal quality of several proposal sets on one ground truth, as a table and a plot.

The GoogLeNet entry's claim is about a trade-off (fewer boxes, more coverage), so every set is
reported with its box count next to coverage@0.5, best overlaps and recall against the number of
proposals kept per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
