"""How selective search is run: one record of its settings, checked once, stored with the boxes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The backends themselves live in incdet.proposals.selective_search; their names live here, so
# command-line parsers can offer them without importing OpenCV or the search code.
BACKENDS = ("opencv", "selectivesearch")
DEFAULT_BACKEND = "opencv"


@dataclass(frozen=True)
class SearchSettings:
    """Selective-search settings (see :func:`incdet.proposals.selective_search.selective_search`).

    ``superpixel_scale`` multiplies R-CNN's Felzenszwalb k {50, 100} (2 = GoogLeNet's doubled
    superpixels); ``search_width`` is the width images are resized to for the search (R-CNN: 500;
    0 = full resolution); boxes smaller than ``min_size`` px on a side are dropped.
    """

    backend: str = DEFAULT_BACKEND
    superpixel_scale: float = 2.0
    min_size: int = 20
    search_width: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"selective-search backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.superpixel_scale > 0:
            raise ValueError(f"superpixel scale must be positive, got {self.superpixel_scale}")
        if self.min_size < 1:
            raise ValueError(f"minimum proposal size must be >= 1 px, got {self.min_size}")
        if self.search_width < 0:
            raise ValueError(f"search width must be >= 0 (0 = full resolution), got {self.search_width}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
