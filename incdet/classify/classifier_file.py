"""The region-classifier file: weights plus everything needed to use them correctly.

A detector that loads weights must also know the class list, the crop size and the
context padding they were trained with; storing them together makes a mismatched
checkpoint an error at load time instead of silently wrong detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from incdet.classify.model import RegionClassifier
from incdet.model_file import ModelSpec, load_model, save_model
from incdet.nets.factory import build_classifier, check_network_fields


@dataclass(frozen=True)
class RegionClassifierSpec(ModelSpec):
    """How a region classifier was built and what its outputs mean (index 0 = background)."""

    FORMAT = "incdet.region_classifier.v1"
    WHAT = "region-classifier"

    arch: str
    classes: tuple[str, ...]
    input_size: int
    context_pad: int
    width: float = 1.0
    low_res: bool = False
    bbox_reg: bool = False  # carries a box regressor (files from before it existed: False)

    @property
    def num_outputs(self) -> int:
        return len(self.classes) + 1

    def validate(self) -> None:
        check_network_fields(self.arch, self.classes, self.input_size, self.width, self.low_res)
        if not 0 <= 2 * self.context_pad < self.input_size:
            raise ValueError(f"context_pad {self.context_pad} leaves no room in a {self.input_size} px crop")

    def build(self) -> RegionClassifier:
        net = build_classifier(self.arch, self.num_outputs, width=self.width, low_res=self.low_res)
        return RegionClassifier(net, self.num_outputs, self.bbox_reg)

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return RegionClassifier.upgrade_state(state)


def save_region_classifier(path: str | Path, spec: RegionClassifierSpec, model: nn.Module) -> None:
    save_model(path, spec, model)


def load_region_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[RegionClassifierSpec, RegionClassifier]:
    """Load a classifier saved by ``save_region_classifier``, in eval mode on ``device``."""
    return load_model(path, RegionClassifierSpec, device)
