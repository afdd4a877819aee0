"""Detections as COCO-results records, the file format ``incdet eval`` and pycocotools read."""

from __future__ import annotations

from typing import Sequence

from incdet.structures import Detections


def to_coco_records(dets: Detections, image_id: int, file_name: str, classes: Sequence[str]) -> list[dict]:
    """One record per detection: bbox as [x, y, w, h], category ids 1-based (0 is background)."""
    records = []
    for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist()):
        x1, y1, x2, y2 = box
        records.append({
            "image_id": image_id,
            "file_name": file_name,
            "category_id": label + 1,
            "category_name": classes[label],
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(score, 5),
        })
    return records
