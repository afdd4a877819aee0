"""Hand-made detection records for the evaluator tests (COCO-results fields the evaluator reads)."""


def det(file_name: str, cls: str, x1: float, y1: float, x2: float, y2: float, score: float) -> dict:
    """One detection of class ``cls`` in ``file_name``, given as xyxy pixels, stored as COCO xywh."""
    return {"file_name": file_name, "category_name": cls, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
