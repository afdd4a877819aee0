"""The trained-backbone file: weights plus what is needed to evaluate them (arch, classes, input size).

``incdet eval-cls`` reads this file, and region training can start from it (``model.init``). The
same weights are also written as a plain torchvision-style state dict (``save_state_dict``), which
``load_backbone_weights`` loads like any torchvision file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from incdet.io import atomic_path
from incdet.model_file import ModelSpec, load_model, save_model
from incdet.nets.factory import ARCHS, build_classifier, check_network_fields


@dataclass(frozen=True)
class BackboneSpec(ModelSpec):
    """How a classification backbone was built and what its outputs mean."""

    FORMAT = "incdet.backbone_classifier.v1"
    WHAT = "backbone"

    arch: str
    classes: tuple[str, ...]
    input_size: int
    width: float = 1.0
    low_res: bool = False

    def validate(self) -> None:
        check_network_fields(self.arch, self.classes, self.input_size, self.width, self.low_res)

    def build(self, aux_logits: bool = False, dropout: float | None = None) -> nn.Module:
        return build_classifier(self.arch, len(self.classes), width=self.width, low_res=self.low_res, aux_logits=aux_logits, dropout=dropout)

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Side heads are training-only: an inference model has none, so their weights are dropped."""
        heads = ARCHS[self.arch].aux_prefixes
        return {k: v for k, v in state.items() if not k.startswith(heads)}


def save_backbone(path: str | Path, spec: BackboneSpec, model: nn.Module) -> None:
    save_model(path, spec, model)


def save_state_dict(path: str | Path, model: nn.Module) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load_backbone(path: str | Path, device: torch.device | str = "cpu") -> tuple[BackboneSpec, nn.Module]:
    """A backbone saved by ``save_backbone``, in eval mode on ``device`` (side heads dropped: inference only)."""
    return load_model(path, BackboneSpec, device)
