"""The MultiBox checkpoint file: weights, the priors they were trained against, and the input size.

Outputs only mean something relative to their priors and to the input size the whole image was
resized to, so both are stored with the weights and checked whenever a file is loaded; a file
that disagrees with what the caller expects (a training config) is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from incdet.errors import InputError
from incdet.model_file import ModelSpec, load_model, save_model
from incdet.multibox.network import MultiBoxNet


@dataclass(frozen=True)
class MultiBoxSpec(ModelSpec):
    """How a MultiBox network was built (the priors themselves are in its state dict)."""

    FORMAT = "incdet.multibox.v1"
    WHAT = "MultiBox checkpoint"

    num_priors: int
    input_size: int
    width: float = 0.25
    head_channels: int = 64
    hidden: int = 128

    def build(self, priors: torch.Tensor | None = None, **init: float) -> MultiBoxNet:
        """A network over ``priors`` (default: placeholders a state dict overwrites); ``init`` passes
        training-only settings (dropout, positive_rate)."""
        if priors is None:
            priors = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(self.num_priors, 1)
        if priors.shape != (self.num_priors, 4):
            raise ValueError(f"expected ({self.num_priors}, 4) priors, got shape {tuple(priors.shape)}")
        return MultiBoxNet(
            priors, input_size=self.input_size, width=self.width, head_channels=self.head_channels, hidden=self.hidden, **init
        )

    def model_for(self, state: dict[str, torch.Tensor]) -> MultiBoxNet:
        priors = state.get("priors")
        if not isinstance(priors, torch.Tensor):
            raise ValueError("the state dict has no priors")
        problem = check_priors(priors)
        if problem is None and len(priors) != self.num_priors:
            problem = f"stores {len(priors)} priors but says num_priors {self.num_priors}"
        if problem:
            raise ValueError(problem)
        return self.build(priors)

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
    save_model(path, spec, model)


def load_multibox(
    path: str | Path, device: torch.device | str = "cpu", expected: MultiBoxSpec | None = None
) -> tuple[MultiBoxSpec, MultiBoxNet]:
    """Load a network saved by :func:`save_multibox`, in eval mode on ``device``.

    With ``expected`` (built from a config), a checkpoint whose priors, input size or layer sizes
    differ is an InputError naming each difference.
    """
    spec, model = load_model(path, MultiBoxSpec, device)
    if expected is not None:
        differences = spec.differences(expected)
        if differences:
            raise InputError(path, "MultiBox checkpoint does not match the config: it has " + ", ".join(differences))
    return spec, model
