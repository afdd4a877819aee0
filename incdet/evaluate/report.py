"""Presenting an EvalResult: the per-class table, a JSON document, precision-recall PNGs."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from incdet.evaluate.ap import interpolated_precision
from incdet.evaluate.evaluator import EvalResult
from incdet.io import atomic_path

SORT_KEYS = ("ap", "name", "index")


def _fmt_ap(ap: float) -> str:
    return "-" if math.isnan(ap) else f"{100 * ap:6.2f}"


def format_table(result: EvalResult, sort: str = "ap", display_names: Mapping[str, str] | None = None) -> str:
    """Per-class AP (in %), ground-truth and detection counts, then the mean.

    ``sort``: "ap" (best first; classes without ground truth last), "name" or "index"
    (class-list order). Classes without ground truth show AP "-" and are not in the mean.
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {SORT_KEYS}")
    names = display_names or {}
    rows = list(enumerate(result.classes, 1))
    if sort == "ap":
        rows.sort(key=lambda r: (math.isnan(r[1].ap), -(0 if math.isnan(r[1].ap) else r[1].ap), r[0]))
    elif sort == "name":
        rows.sort(key=lambda r: (names.get(r[1].name, r[1].name).lower(), r[0]))
    width = max([len(c.name) for c in result.classes] + [5])
    has_display = any(c.name in names for c in result.classes)
    dwidth = max([len(names.get(c.name, "")) for c in result.classes] + [4])
    header = f"{'#':>4}  {'class':<{width}}  " + (f"{'name':<{dwidth}}  " if has_display else "") + \
             f"{'AP(%)':>6}  {'#gt':>6}  {'#dets':>7}"
    lines = [header, "-" * len(header)]
    for index, c in rows:
        display = f"{names.get(c.name, ''):<{dwidth}}  " if has_display else ""
        lines.append(f"{index:>4}  {c.name:<{width}}  {display}{_fmt_ap(c.ap):>6}  {c.num_gt:>6}  {c.num_dets:>7}")
    lines.append("-" * len(header))
    evaluated = len(result.evaluated_classes)
    rule = "with" if result.small_object_rule else "without"
    lines.append(f"mAP {_fmt_ap(result.mean_ap).strip()}% over {evaluated} of {len(result.classes)} classes "
                 f"(those with ground truth), {result.num_images} images, IoU {result.iou_threshold:g} "
                 f"{rule} the small-object rule")
    return "\n".join(lines)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def to_json(result: EvalResult, display_names: Mapping[str, str] | None = None) -> dict:
    """The numbers for scripts: mAP, per-class AP/counts/max recall, what was skipped."""
    names = display_names or {}
    return {
        "mean_ap": _num(result.mean_ap),
        "iou_threshold": result.iou_threshold,
        "small_object_rule": result.small_object_rule,
        "num_images": result.num_images,
        "num_classes_evaluated": len(result.evaluated_classes),
        "classes": [{
            "index": i, "class": c.name, "name": names.get(c.name, c.name), "ap": _num(c.ap),
            "num_gt": c.num_gt, "num_dets": c.num_dets, "num_tp": c.num_tp,
            "max_recall": _num(c.recall[-1]) if len(c.recall) else (0.0 if c.num_gt else None),
        } for i, c in enumerate(result.classes, 1)],
        "skipped": result.skipped.to_json(),
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "class"


def write_pr_curves(result: EvalResult, folder: str | Path, display_names: Mapping[str, str] | None = None) -> list[Path]:
    """One PNG per class with ground truth: raw precision-recall points and the interpolated
    (monotone) curve whose area is the AP. Files are ``NNN_<class>.png``, NNN the class index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = display_names or {}
    folder = Path(folder)
    written = []
    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    try:
        for i, c in enumerate(result.classes, 1):
            if c.num_gt == 0:
                continue
            ax.clear()
            if len(c.recall):  # a class without detections has no curve: an empty plot with its AP of 0
                envelope = interpolated_precision(c.precision)
                # step "pre": envelope[i] holds on (recall[i-1], recall[i]], the area summed into AP
                ax.step(np.concatenate(([0.0], c.recall)), np.concatenate((envelope[:1], envelope)), where="pre",
                        color="C0", label="interpolated")
                ax.plot(c.recall, c.precision, ".", ms=2, color="0.5", label="raw")
                ax.legend(loc="lower left", fontsize=8)
            ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
            label = names.get(c.name, c.name)
            title = label if label == c.name else f"{label} ({c.name})"
            ax.set_title(f"{title}: AP {100 * c.ap:.2f}%", fontsize=10)
            fig.tight_layout()
            path = folder / f"{i:03d}_{_slug(label)}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
            written.append(path)
    finally:
        plt.close(fig)
    return written
