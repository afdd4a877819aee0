"""Detection evaluation: AP per class and mAP at IoU 0.5 with the ILSVRC-DET rules."""

from incdet.evaluate.evaluator import ClassResult, EvalResult, evaluate_detections

__all__ = ["ClassResult", "EvalResult", "evaluate_detections"]
