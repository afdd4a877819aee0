"""Filling a proposal store: stage 1 for every image the store lacks (or holds stale boxes for), each
result stored as its group finishes, so an interrupted fill keeps what it did and a rerun adds only
the rest. Region training calls :func:`fill_store` (``incdet.train.regions.data``, in its data
module's ``setup``); ``incdet propose`` runs its own batched, shardable job loop and shares only
:func:`is_stored` and :func:`store_result`, so both keep the same rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from incdet.engine import process
from incdet.engine.plan import plan_groups
from incdet.engine.stages import Loader, ProposeStep, StepSpec
from incdet.pipeline import Proposer
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import FileStamp, ProposalStore
from incdet.structures import ImageRecord, ImageResult, SkipReport

log = logging.getLogger(__name__)


def is_stored(store: ProposalStore, record: ImageRecord) -> bool:
    """True if ``store`` holds boxes made from ``record``'s file as it is now."""
    try:
        return store.is_current(record.key, record.path)
    except OSError:  # the file is gone or unreadable: not done; the search will say why
        return False


def store_result(store: ProposalStore, result: ImageResult) -> None:
    """Keep one image's stage-1 result (with its size, file stamp and search time) in ``store``."""
    store.put(result.image.key, result.proposals, width=result.size[0], height=result.size[1],
              stamp=FileStamp.of(result.image.path), seconds=result.seconds.get("search"))


def fill_store(
    store: ProposalStore,
    records: Sequence[ImageRecord],
    settings: SearchSettings,
    *,
    workers: int | None = None,
    on_done: Callable[[ImageResult], None] | None = None,
) -> SkipReport:
    """Selective search (one worker process per core, default) for every record the store lacks.
    Returns what could not be searched; those images get no row, so a rerun tries them again."""
    todo = [record for record in records if not is_stored(store, record)]
    skipped = SkipReport()
    if todo:
        log.info("selective search for %d image(s) into %s", len(todo), store.path)
    step = ProposeStep(Proposer(settings, device="cpu"))
    spec = StepSpec("propose", {"search": settings, "device": "cpu"})
    for results in process(plan_groups(todo, 1), Loader(settings), spec, workers=workers, step=step):
        for result in results:
            if result.error is None:
                store_result(store, result)
            else:
                skipped.skip("image", None, result.error)
            if on_done:
                on_done(result)
    return skipped
