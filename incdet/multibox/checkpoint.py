"""The MultiBox checkpoint file: weights, the priors they were trained against, and the input size.

Outputs only mean something relative to their priors and to the input size the whole image was
resized to, so both are stored with the weights and checked whenever a file is loaded; a file
that disagrees with what the caller expects (a training config) is refused by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from incdet.errors import InputError
from incdet.model_file import read_model_file, save_model_file
from incdet.multibox.network import MultiBoxNet

FORMAT = "incdet.multibox.v1"


@dataclass(frozen=True)
class MultiBoxSpec:
    """How a MultiBox network was built (the priors themselves are in its state dict)."""

    num_priors: int
    input_size: int
    width: float = 0.25
    head_channels: int = 64
    hidden: int = 128
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def build(self, priors: torch.Tensor, **init: float) -> MultiBoxNet:
        """A network over ``priors``; ``init`` passes training-only settings (dropout, positive_rate)."""
        if priors.shape != (self.num_priors, 4):
            raise ValueError(f"expected ({self.num_priors}, 4) priors, got shape {tuple(priors.shape)}")
        return MultiBoxNet(
            priors, input_size=self.input_size, width=self.width, head_channels=self.head_channels, hidden=self.hidden, **init
        )

    def differences(self, other: MultiBoxSpec) -> list[str]:
        """What in ``other`` (e.g. a config) disagrees with this spec (e.g. a checkpoint), in words."""
        names = {"num_priors": "priors", "input_size": "input size", "width": "width", "head_channels": "head channels", "hidden": "hidden units"}
        return [
            f"{label} {getattr(self, key)} (config: {getattr(other, key)})"
            for key, label in names.items()
            if getattr(self, key) != getattr(other, key)
        ]


def check_priors(priors: torch.Tensor) -> str | None:
    """Why ``priors`` are not usable normalised boxes, or None if they are."""
    if priors.dim() != 2 or priors.shape[1] != 4 or not len(priors):
        return f"priors must be a non-empty (K, 4) array, got shape {tuple(priors.shape)}"
    if not torch.isfinite(priors).all() or (priors < 0).any() or (priors > 1).any():
        return "priors must be normalised coordinates in [0, 1]"
    if (priors[:, 2:] <= priors[:, :2]).any():
        return "a prior has x2 <= x1 or y2 <= y1"
    return None


def save_multibox(path: str | Path, spec: MultiBoxSpec, model: MultiBoxNet) -> None:
    save_model_file(path, FORMAT, asdict(spec), model)


def load_multibox(
    path: str | Path, device: torch.device | str = "cpu", expected: MultiBoxSpec | None = None
) -> tuple[MultiBoxSpec, MultiBoxNet]:
    """Load a network saved by :func:`save_multibox`, in eval mode on ``device``.

    With ``expected`` (built from a config), a checkpoint whose priors, input size or layer sizes
    differ is an InputError naming each difference.
    """
    payload = read_model_file(path, FORMAT, "MultiBox checkpoint")
    try:
        spec = MultiBoxSpec(
            num_priors=int(payload["num_priors"]), input_size=int(payload["input_size"]), width=float(payload["width"]),
            head_channels=int(payload["head_channels"]), hidden=int(payload["hidden"]), metadata=dict(payload.get("metadata", {})),
        )
        state = payload["state_dict"]
        priors = state["priors"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"MultiBox checkpoint is missing or has a malformed field ({exc})") from None
    problem = check_priors(priors)
    if problem is None and len(priors) != spec.num_priors:
        problem = f"stores {len(priors)} priors but says num_priors {spec.num_priors}"
    if problem:
        raise InputError(path, problem)
    if expected is not None:
        differences = spec.differences(expected)
        if differences:
            raise InputError(path, "MultiBox checkpoint does not match the config: it has " + ", ".join(differences))
    try:
        model = spec.build(priors)
        model.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise InputError(path, f"checkpoint weights do not match its architecture ({str(exc).splitlines()[0]})") from None
    return spec, model.to(device).eval()
