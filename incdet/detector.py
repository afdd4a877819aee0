"""Stages 2-4 on one image: proposals -> warp -> ensemble -> per-class NMS.

Proposals come in from outside because selective search, the slow stage, runs over a
process pool for many images at once (``incdet.proposals.store.propose_images``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from incdet.classify.ensemble import Ensemble
from incdet.postprocess.nms import select_detections
from incdet.structures import Detections, Proposals
from incdet.transforms import image_to_tensor


@dataclass(frozen=True)
class DetectorConfig:
    score_threshold: float = 0.05
    nms_iou: float = 0.3
    max_detections: int = 100


class Detector:
    """Runs every stage on one image and keeps the seconds each stage took."""

    def __init__(self, ensemble: Ensemble, config: DetectorConfig = DetectorConfig(), device: torch.device | str = "cpu") -> None:
        self.ensemble = ensemble.to(device)
        self.config = config
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.ensemble.classes

    def detect(self, image: np.ndarray, proposals: Proposals | np.ndarray) -> Detections:
        """Detections for an RGB uint8 image and its proposals (or (N, 4) xyxy boxes)."""
        if not isinstance(proposals, Proposals):
            proposals = Proposals.from_boxes(proposals)
        start = time.perf_counter()
        proposals = proposals.to(self.device)
        scores = self.ensemble(image_to_tensor(image, self.device), proposals.boxes)
        self.seconds["warp+classify"] += time.perf_counter() - start
        start = time.perf_counter()
        dets = select_detections(proposals, scores, self.config.score_threshold, self.config.nms_iou, self.config.max_detections)
        self.seconds["nms"] += time.perf_counter() - start
        return dets.to("cpu")
