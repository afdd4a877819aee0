"""Stage 1 as one object: selective search, and a MultiBox network's top-N boxes merged in.

The pipeline, both batch engines, ``incdet propose`` and the proposal stores of region training all
propose through :class:`Proposer`. Boxes are float32 (N, 4) ``(x1, y1, x2, y2)`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from incdet.devices import autocast, resolve_device, resolve_precision
from incdet.model_file import model_record, read_spec
from incdet.multibox.multibox_file import MultiBoxSpec, load_multibox
from incdet.multibox.propose import MultiBoxSettings, merge_multibox, predict_images
from incdet.proposals.selective_search import search_proposals
from incdet.proposals.settings import SearchSettings
from incdet.structures import Proposals


class Proposer:
    """Stage 1: selective search, and a MultiBox network's top-N boxes merged in when it has one
    (``multibox``: a MultiBox checkpoint, or None for selective search only; ``precision``: what it
    computes in, as :class:`incdet.pipeline.Pipeline`'s; ``load=False``: the MultiBox file read and
    checked, its network not built, as a driver whose workers build their own needs it)."""

    def __init__(self, search: SearchSettings = SearchSettings(), multibox: str | Path | None = None,
                 multibox_settings: MultiBoxSettings = MultiBoxSettings(), device: torch.device | str = "auto",
                 precision: str = "auto", load: bool = True) -> None:
        self.search_settings = search
        # Absolute: an engine's workers may run in another folder.
        self.multibox_path = Path(multibox).absolute() if multibox is not None else None
        self.multibox_settings = multibox_settings
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision = resolve_precision(precision, self.device)
        self.multibox = None
        if multibox is not None and load:
            self.multibox = load_multibox(self.multibox_path, self.device)[1]
        elif multibox is not None:  # described only (load=False): the file is read and checked, no network built
            read_spec(self.multibox_path, MultiBoxSpec)

    def __call__(self, images: Sequence[np.ndarray], proposals: Sequence[Proposals] | None = None) -> list[Proposals]:
        """Proposals of each image: ``proposals`` given (e.g. stored ones) or searched, then MultiBox's merged in."""
        if proposals is None:
            proposals = [self.search(image) for image in images]
        return self.add_multibox(images, proposals)

    def search(self, image: np.ndarray) -> Proposals:
        return search_proposals(image, self.search_settings)

    def multibox_boxes(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each image's top-N MultiBox boxes, best first, batched across the images."""
        settings = self.multibox_settings
        with autocast(self.device, self.precision):
            return [boxes for boxes, _ in predict_images(self.multibox, images, settings.top_n, settings.nms_iou)]

    def add_multibox(self, images: Sequence[np.ndarray], proposals: Sequence[Proposals]) -> list[Proposals]:
        """``proposals`` with MultiBox's boxes merged in (as they are without a network)."""
        return self.add_multibox_kept(images, proposals)[0]

    def add_multibox_kept(self, images: Sequence[np.ndarray],
                          proposals: Sequence[Proposals]) -> tuple[list[Proposals], list[np.ndarray | None]]:
        """:meth:`add_multibox`, and MultiBox's own boxes of each image (None without a network), to compare them."""
        if self.multibox is None or not images:
            return list(proposals), [None] * len(proposals)
        boxes = self.multibox_boxes(images)
        return [merge_multibox(p, b, self.multibox_settings.dedup_iou) for p, b in zip(proposals, boxes)], boxes

    def settings(self) -> dict[str, Any]:
        """What the proposals depend on besides where they come from (the search settings or a file)."""
        if self.multibox_path is None:
            return {"multibox": None}
        return {"multibox": {**model_record(self.multibox_path), **asdict(self.multibox_settings)}}
