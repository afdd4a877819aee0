"""The trained-backbone file: weights plus what is needed to evaluate them (arch, classes, input size).

``incdet eval-cls`` reads this file. The same weights are also written as a plain
torchvision-style state dict (``save_state_dict``), which ``load_backbone_weights`` loads
to start region classifiers from the backbone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from incdet.errors import InputError
from incdet.io import atomic_path
from incdet.model_file import read_model_file, save_model_file
from incdet.nets.factory import build_classifier

FORMAT = "incdet.backbone_classifier.v1"


@dataclass(frozen=True)
class BackboneSpec:
    """How a classification backbone was built and what its outputs mean."""

    arch: str
    classes: tuple[str, ...]
    input_size: int
    width: float = 1.0
    low_res: bool = False
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def build(self, aux_logits: bool = False, dropout: float | None = None) -> nn.Module:
        return build_classifier(self.arch, len(self.classes), width=self.width, low_res=self.low_res, aux_logits=aux_logits, dropout=dropout)


def save_backbone(path: str | Path, spec: BackboneSpec, model: nn.Module) -> None:
    save_model_file(path, FORMAT, {**asdict(spec), "classes": list(spec.classes)}, model)


def save_state_dict(path: str | Path, model: nn.Module) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load_backbone(path: str | Path, device: torch.device | str = "cpu") -> tuple[BackboneSpec, nn.Module]:
    """A backbone saved by ``save_backbone``, in eval mode on ``device`` (side heads dropped: inference only)."""
    payload = read_model_file(path, FORMAT, "backbone")
    try:
        spec = BackboneSpec(
            arch=payload["arch"], classes=tuple(payload["classes"]), input_size=int(payload["input_size"]),
            width=float(payload["width"]), low_res=bool(payload["low_res"]), metadata=dict(payload.get("metadata", {})),
        )
        model = spec.build()
        heads = tuple(getattr(model, "aux_prefixes", ()))
        model.load_state_dict({k: v for k, v in payload["state_dict"].items() if not k.startswith(heads)})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(path, f"backbone file does not match its architecture ({str(exc).splitlines()[0]})") from None
    return spec, model.to(device).eval()
