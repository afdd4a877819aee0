"""Labelled boxes drawn on an image, for people to look at detections.

Lines and text scale with the image, so that a label reads the same on a 4000 px photo as on a
500 px one; each label sits on a filled box of its class's colour, inside the image."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from incdet.structures import Detections

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990"]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_HEIGHT = 0.02  # of the image's shorter side: 60 px high on a 4000x3000 photo
_MIN_TEXT_PX = 10  # legible on small images (up to 500 px on the shorter side)


def draw_detections(image: np.ndarray, dets: Detections, classes: Sequence[str], min_score: float = 0.5) -> np.ndarray:
    """RGB uint8 image with every detection scoring >= ``min_score`` boxed and labelled."""
    keep = dets.scores >= min_score
    boxes, scores, labels = dets.boxes[keep].cpu(), dets.scores[keep].cpu(), dets.labels[keep].cpu()
    if not len(boxes):
        return image
    canvas = np.ascontiguousarray(image).copy()
    height, width = canvas.shape[:2]
    line = max(2, round(min(height, width) / 400))
    for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        color = _rgb(_PALETTE[label % len(_PALETTE)])
        x0, y0, x1, y1 = (round(v) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, line)
        _label(canvas, f"{classes[label]} {score:.2f}", (x0, y0), color)
    return canvas


def _label(canvas: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int]) -> None:
    """``text`` on a box of ``color`` just above ``corner`` (a box's top left), or just below it where
    the image ends; shifted and, if wider than the image, shrunk to stay inside it."""
    height, width = canvas.shape[:2]
    (unit_w, unit_h), _ = cv2.getTextSize(text, _FONT, 1.0, 1)
    scale = max(_MIN_TEXT_PX, _TEXT_HEIGHT * min(height, width)) / unit_h
    pad = max(2, round(unit_h * scale * 0.25))
    scale = min(scale, (width - 2 * pad) / unit_w)  # a long name on a small image
    thickness = max(1, round(scale * 1.5))
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x = min(max(corner[0], 0), max(width - box_w, 0))
    y = corner[1] - box_h if corner[1] >= box_h else min(max(corner[1], 0), max(height - box_h, 0))
    cv2.rectangle(canvas, (x, y), (x + box_w - 1, y + box_h - 1), color, cv2.FILLED)
    ink = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 150 else (255, 255, 255)  # contrast
    cv2.putText(canvas, text, (x + pad, y + pad + text_h), _FONT, scale, ink, thickness, cv2.LINE_AA)


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
