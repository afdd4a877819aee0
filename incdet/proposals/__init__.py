"""Stage 1: class-agnostic region proposals: selective search and its settings, the per-image proposal
store, flat proposal files, the merge with MultiBox boxes, and proposal-quality measures."""

from incdet.proposals.files import load_proposals, save_proposals
from incdet.proposals.quality import best_overlaps, coverage, mabo, recall_at
from incdet.proposals.selective_search import selective_search
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore

__all__ = [
    "ProposalStore",
    "SearchSettings",
    "best_overlaps",
    "coverage",
    "load_proposals",
    "mabo",
    "recall_at",
    "save_proposals",
    "selective_search",
]
