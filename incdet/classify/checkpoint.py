"""The region-classifier file: weights plus everything needed to use them correctly.

A detector that loads weights must also know the class list, the crop size and the
context padding they were trained with; storing them together makes a mismatched
checkpoint an error at load time instead of silently wrong detections.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from incdet.errors import InputError
from incdet.model_file import read_model_file, save_model_file
from incdet.nets.factory import build_classifier

FORMAT = "incdet.region_classifier.v1"


@dataclass(frozen=True)
class RegionClassifierSpec:
    """How a region classifier was built and what its outputs mean (index 0 = background)."""

    arch: str
    classes: tuple[str, ...]
    input_size: int
    context_pad: int
    width: float = 1.0
    low_res: bool = False
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_outputs(self) -> int:
        return len(self.classes) + 1

    def build(self) -> nn.Module:
        return build_classifier(self.arch, self.num_outputs, width=self.width, low_res=self.low_res)


def save_region_classifier(path: str | Path, spec: RegionClassifierSpec, model: nn.Module) -> None:
    save_model_file(path, FORMAT, {**asdict(spec), "classes": list(spec.classes)}, model)


def load_region_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[RegionClassifierSpec, nn.Module]:
    """Load a classifier saved by ``save_region_classifier``, in eval mode on ``device``."""
    payload = read_model_file(path, FORMAT, "region-classifier")
    try:
        spec = RegionClassifierSpec(
            arch=payload["arch"], classes=tuple(payload["classes"]), input_size=int(payload["input_size"]),
            context_pad=int(payload["context_pad"]), width=float(payload["width"]), low_res=bool(payload["low_res"]),
            metadata=dict(payload.get("metadata", {})),
        )
        model = spec.build()
        model.load_state_dict(payload["state_dict"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(path, f"checkpoint does not match its architecture ({str(exc).splitlines()[0]})") from None
    return spec, model.to(device).eval()
