"""Stage 4: from per-region class probabilities to final detections."""
