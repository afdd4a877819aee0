"""The records that cross stage boundaries: an image to process, its proposals, its detections, and
what a batch job skipped.

Every stage takes and returns these instead of tuples and dicts, as detectron2's ``structures``
do: the fields say what they hold, and per-box records index and move to a device as a whole.
Boxes are always float32 (N, 4) ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the image
as a viewer shows it (0-based; right and bottom edges exclusive, so a box's width is ``x2 - x1``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from incdet.errors import InputError

# Which stage proposed a box: selective search, MultiBox, or both (the same box from each).
SELECTIVE_SEARCH, MULTIBOX, BOTH = "selective_search", "multibox", "both"
SOURCES = (SELECTIVE_SEARCH, MULTIBOX, BOTH)

_Boxes = TypeVar("_Boxes", bound="_PerBox")


def _as_boxes(boxes: Any) -> Tensor:
    if not isinstance(boxes, Tensor):
        boxes = torch.from_numpy(np.asarray(boxes, np.float32))
    return boxes.to(torch.float32).reshape(-1, 4)


@dataclass
class _PerBox:
    """Every field is a tensor with one row per box, so indexing and ``to`` apply to all of them."""

    def __len__(self) -> int:
        return len(self.boxes)  # type: ignore[attr-defined]

    def __getitem__(self: _Boxes, index: Any) -> _Boxes:
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self: _Boxes, device: torch.device | str) -> _Boxes:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @classmethod
    def concat(cls: type[_Boxes], items: list[_Boxes]) -> _Boxes:
        """The rows of several records of one kind (at least one) as one record, in order."""
        return replace(items[0], **{f.name: torch.cat([getattr(item, f.name) for item in items]) for f in fields(items[0])})

    def split(self: _Boxes, sizes: list[int]) -> list[_Boxes]:
        """The inverse of :meth:`concat`: consecutive records of ``sizes`` rows each."""
        parts = {f.name: getattr(self, f.name).split(sizes) for f in fields(self)}
        return [replace(self, **{name: rows[i] for name, rows in parts.items()}) for i in range(len(sizes))]


@dataclass
class Proposals(_PerBox):
    """Class-agnostic candidate boxes of one image, best-ranked first.

    ``boxes`` float32 (N, 4) xyxy pixels; ``source[i]`` indexes :data:`SOURCES`: the stage that
    proposed box i (uint8, so a million proposals cost 1 MB of provenance, not strings).
    """

    boxes: Tensor
    source: Tensor

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        self.source = torch.as_tensor(self.source, dtype=torch.uint8).reshape(-1)
        if len(self.source) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.source)} sources")

    @classmethod
    def from_boxes(cls, boxes: Any, source: str = SELECTIVE_SEARCH) -> Proposals:
        """Boxes that all came from one stage."""
        boxes = _as_boxes(boxes)
        return cls(boxes, torch.full((len(boxes),), SOURCES.index(source), dtype=torch.uint8))

    def source_names(self) -> list[str]:
        return [SOURCES[i] for i in self.source.tolist()]

    def counts(self) -> dict[str, int]:
        """Boxes per source, and the total."""
        per = torch.bincount(self.source.long().cpu(), minlength=len(SOURCES)).tolist()
        return {**dict(zip(SOURCES, per)), "total": len(self)}


@dataclass
class Detections(_PerBox):
    """Final detections of one image, best first.

    ``boxes`` float32 (K, 4) xyxy pixels, ``scores`` (K,) in [0, 1], ``labels`` (K,) 0-based
    indices into the class list (background is not a label here), ``source`` (K,) the stage that
    proposed the region each detection came from (indexes :data:`SOURCES`).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    source: Tensor

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        self.source = torch.as_tensor(self.source, dtype=torch.uint8).reshape(-1)
        if not len(self.boxes) == len(self.scores) == len(self.labels) == len(self.source):
            raise ValueError("boxes, scores, labels and source must have one row per detection")


@dataclass
class RegionScores:
    """What the region classifiers say about one image's proposals (the seam between stages 3 and 4).

    ``probs`` (N, C + 1) class probabilities, column 0 background; ``boxes`` (N, C + 1, 4) the
    proposal refined for each class by bounding-box regression, or None when no classifier
    regresses boxes (each class then keeps the proposal's box).
    """

    probs: Tensor
    boxes: Tensor | None = None

    def __post_init__(self) -> None:
        if self.boxes is not None and self.boxes.shape != (*self.probs.shape, 4):
            raise ValueError(f"boxes must be (N, C + 1, 4) = {(*self.probs.shape, 4)}, got {tuple(self.boxes.shape)}")


@dataclass(frozen=True)
class ImageRecord:
    """An image of a batch job: where it is, the key its results are stored under, its number.

    ``key`` is the path relative to the folder it was found in (``sub/0001.jpg``), so two
    sub-folders may both hold ``0001.jpg``; ``image_id`` is its position in the whole job's input
    (stable across shards and resumed runs, so outputs are identical however the job was split).
    """

    path: Path | str  # a local file, or an object-store URL (a string: see incdet.io.is_url)
    key: str
    image_id: int


@dataclass
class ImageResult:
    """What a batch job made of one image: its proposals and (when it was classified) detections, or
    ``error`` (one line naming the file) when it was skipped. ``warnings`` are one-line notes about
    an image that was kept (e.g. stored proposals clipped to it); ``seconds`` the time per stage;
    ``size`` its (width, height); ``by_source`` each stage's own boxes before they were merged (float32
    (N, 4) xyxy, by source name), only when a job asks for them."""

    image: ImageRecord
    proposals: Proposals | None = None
    detections: Detections | None = None
    error: str | None = None
    transient: bool = False  # the error may not recur (I/O error, out of memory): resuming retries the image
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    by_source: dict[str, np.ndarray] = field(default_factory=dict)


SKIP_KINDS = ("annotation file", "image", "object", "detection", "line")


@dataclass
class Skip:
    kind: str  # one of SKIP_KINDS, or "warning" for an item kept as it is
    message: str  # "path: problem", one line
    count: int = 1  # how many items of ``kind`` this line stands for


@dataclass
class SkipReport:
    """Everything a job skipped (or kept with a warning), one line each: the one shape every stage,
    reader and command uses to say what it left out."""

    items: list[Skip] = field(default_factory=list)

    def skip(self, kind: str, path: str | Path | None, problem: str, count: int = 1) -> None:
        if kind not in SKIP_KINDS:
            raise ValueError(f"unknown skip kind {kind!r}")
        self.items.append(Skip(kind, str(InputError(path, problem)), count))

    def warn(self, path: str | Path | None, problem: str) -> None:
        self.items.append(Skip("warning", str(InputError(path, problem)), 1))

    def extend(self, other: SkipReport) -> None:
        self.items.extend(other.items)

    def __len__(self) -> int:
        return len(self.items)

    def messages(self, kind: str | None = None) -> list[str]:
        return [s.message for s in self.items if kind is None or s.kind == kind]

    def counts(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for item in self.items:
            totals[item.kind] += item.count
        return dict(totals)

    def summary(self) -> str:
        """E.g. ``skipped 2 annotation files, 5 objects; 1 warning`` or ``nothing skipped``."""
        counts = self.counts()
        parts = [f"{counts[k]} {k}{'s' if counts[k] != 1 else ''}" for k in SKIP_KINDS if counts.get(k)]
        text = f"skipped {', '.join(parts)}" if parts else "nothing skipped"
        if counts.get("warning"):
            text += f"; {counts['warning']} warning{'s' if counts['warning'] != 1 else ''} (items kept)"
        return text

    def to_json(self) -> dict:
        return {"summary": self.summary(), "counts": self.counts(),
                "items": [{"kind": s.kind, "count": s.count, "message": s.message} for s in self.items]}
