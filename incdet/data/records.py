"""Ground-truth records: one :class:`Annotation` per image, and a :class:`Dataset` of one split.

Every format reader produces these and every stage consumes them, whatever the file format was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from incdet.errors import InputError
from incdet.structures import SkipReport


@dataclass
class Annotation:
    """Ground truth of one image.

    ``boxes`` are float32 (N, 4) xyxy in continuous pixel coordinates (0-based, right and
    bottom edges exclusive, as torchvision uses), so a box's width is ``x2 - x1`` — the same
    number as ILSVRC/VOC's inclusive ``xmax - xmin + 1``.
    """

    filename: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list[str] = field(default_factory=list)
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.difficult = np.asarray(self.difficult, bool).reshape(-1)
        if not len(self.difficult) and len(self.boxes):
            self.difficult = np.zeros(len(self.boxes), bool)
        if not (len(self.boxes) == len(self.labels) == len(self.difficult)):
            raise ValueError("boxes, labels and difficult must have one entry per object")


@dataclass
class Dataset:
    """Ground truth of one split, whatever format it came from."""

    format: str  # "voc", "ilsvrc" or "coco"
    classes: list[str]
    annotations: list[Annotation]
    skipped: SkipReport
    image_dir: Path | None = None  # ``image_dir / ann.filename`` is the image
    display_names: dict[str, str] = field(default_factory=dict)  # e.g. synset id -> "bird"
    category_ids: dict[int, str] = field(default_factory=dict)  # detection category_id -> class
    ignored: dict[str, frozenset[str]] = field(default_factory=dict)  # image -> classes not evaluated
    classes_source: str = ""  # where the class list came from, for messages
    classes_inferred: bool = False  # True when no class list was found, only the labels seen

    def image_path(self, ann: Annotation) -> Path:
        if self.image_dir is None:
            raise InputError(ann.filename, f"{self.format} ground truth does not say where its images are")
        return self.image_dir / ann.filename
