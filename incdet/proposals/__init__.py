"""Stage 1: class-agnostic region proposals: selective search, its batch runner, the per-image proposal
store, flat proposal files, the merge with MultiBox boxes, and proposal-quality measures."""

from incdet.proposals.batch import ProposalRun, fill_store, propose_images
from incdet.proposals.files import load_proposals, save_proposals
from incdet.proposals.quality import best_overlaps, coverage, mabo, recall_at
from incdet.proposals.selective_search import selective_search
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore

__all__ = [
    "ProposalRun",
    "ProposalStore",
    "SearchSettings",
    "best_overlaps",
    "coverage",
    "fill_store",
    "load_proposals",
    "mabo",
    "propose_images",
    "recall_at",
    "save_proposals",
    "selective_search",
]
