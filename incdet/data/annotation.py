"""The in-memory ground-truth record every reader produces and every stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
