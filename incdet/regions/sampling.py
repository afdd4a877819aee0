"""Which labelled regions of an image a training step sees, and which ones validation scores.

Proposals are mostly background (about 92 % on the demo), so training draws a fixed share of
foreground, as R-CNN (32 of 128 regions) and Fast R-CNN (25 % of 64 regions per image) do.
Validation must score the same regions every epoch, or its accuracy would move with the draw:
it takes every foreground region and a seeded sample of background in the training ratio.
"""

from __future__ import annotations

import torch
from torch import Tensor

from incdet.regions.labels import BACKGROUND


def sample_regions(labels: Tensor, count: int, fg_fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Indices of at most ``count`` regions, drawn without replacement, Fast R-CNN's way: up to
    ``round(count * fg_fraction)`` foreground regions, the rest background. An image with fewer
    foreground regions gives more background (its batch share of foreground is then lower); an
    image with fewer than ``count`` regions gives all of them."""
    foreground = torch.nonzero(labels != BACKGROUND).flatten()
    background = torch.nonzero(labels == BACKGROUND).flatten()
    num_fg = min(len(foreground), round(count * fg_fraction))
    num_bg = min(len(background), count - num_fg)
    fg = foreground[torch.randperm(len(foreground), generator=generator)[:num_fg]]
    bg = background[torch.randperm(len(background), generator=generator)[:num_bg]]
    return torch.cat([fg, bg])


def validation_regions(labels: Tensor, count: int, fg_fraction: float, seed: int) -> Tensor:
    """The regions validation scores for one image, the same on every call for the same ``seed``:
    every foreground region plus a seeded background sample in the training ratio
    (``(1 - fg_fraction) / fg_fraction`` background regions per foreground one; an image without
    foreground gives the background share of ``count``)."""
    foreground = torch.nonzero(labels != BACKGROUND).flatten()
    background = torch.nonzero(labels == BACKGROUND).flatten()
    wanted = round(len(foreground) * (1 - fg_fraction) / fg_fraction) if len(foreground) else count - round(count * fg_fraction)
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([foreground, background[torch.randperm(len(background), generator=generator)[:wanted]]])
