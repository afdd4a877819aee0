"""Stage 1: class-agnostic region proposals (selective search), their quality, and their cache."""

from incdet.proposals.quality import best_overlaps, coverage, mabo, recall_at
from incdet.proposals.selective_search import selective_search
from incdet.proposals.store import (
    ProposalRun,
    load_proposals,
    propose_images,
    save_proposals,
)

__all__ = [
    "ProposalRun",
    "best_overlaps",
    "coverage",
    "load_proposals",
    "mabo",
    "propose_images",
    "recall_at",
    "save_proposals",
    "selective_search",
]
