"""Selective search over many images: one process per core, results as each image finishes.

Selective search is the slow stage of R-CNN (about a second per image per core), so it runs in a
process pool; each worker decodes its image, searches it and returns the boxes. ``fill_store``
writes them into a :class:`ProposalStore` as they arrive, so an interrupted batch keeps every
finished image and a rerun searches only what is missing or stale.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from incdet.errors import InputError
from incdet.io import read_image
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import FileStamp, ProposalStore
from incdet.structures import Proposals, SkipReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """One image's selective-search boxes (float32 (N, 4) xyxy), its size and the search seconds;
    ``error`` (one line) instead when the image could not be searched."""

    path: Path
    boxes: np.ndarray | None
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    error: str | None = None


def search_image(path: str | Path, settings: SearchSettings) -> SearchResult:
    """Decode and search one image; any failure becomes ``error``, so one odd image never stops a batch."""
    from incdet.proposals.selective_search import selective_search

    path = Path(path)
    start = time.perf_counter()
    try:
        image = read_image(path)
        height, width = image.shape[:2]
        if min(height, width) < settings.min_size:
            raise InputError(path, f"image is {width}x{height} px, smaller than the {settings.min_size} px minimum region size")
        boxes = selective_search(image, settings.superpixel_scale, backend=settings.backend, min_size=settings.min_size,
                                 search_width=settings.search_width, seed=settings.seed)
    except InputError as exc:
        return SearchResult(path, None, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one odd image must not abort a batch of thousands
        return SearchResult(path, None, error=f"{path}: selective search failed ({type(exc).__name__}: {exc})")
    return SearchResult(path, boxes, width, height, time.perf_counter() - start)


def _init_worker() -> None:
    # Each worker is one core's worth of work; library thread pools would only oversubscribe.
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def search_images(paths: Sequence[str | Path], settings: SearchSettings, workers: int | None = None) -> Iterator[SearchResult]:
    """:func:`search_image` for every path over ``workers`` processes (default: one per CPU), yielded
    as each finishes (not in input order)."""
    paths = [Path(p) for p in paths]
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths) or 1))
    if workers == 1:
        for path in paths:
            yield search_image(path, settings)
        return
    # forkserver: forking a parent that already runs torch/OpenMP threads can deadlock children.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["incdet.proposals.selective_search"])
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(search_image, path, settings) for path in paths]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


@dataclass
class ProposalRun:
    """Outcome of a batch held in memory: boxes and search seconds per processed image, and the skipped ones."""

    boxes: dict[Path, np.ndarray] = field(default_factory=dict)
    seconds: dict[Path, float] = field(default_factory=dict)
    skipped: SkipReport = field(default_factory=SkipReport)


def propose_images(
    paths: Sequence[str | Path],
    settings: SearchSettings = SearchSettings(),
    *,
    workers: int | None = None,
    on_done: Callable[[Path], None] | None = None,
) -> ProposalRun:
    """Selective-search boxes of a few images, in memory, in input order; unreadable images (or ones
    the search fails on) are listed in ``skipped`` and never stop the batch. ``on_done`` is called
    once per finished image, e.g. to advance a progress bar."""
    results = {}
    for result in search_images(paths, settings, workers):
        results[result.path] = result
        if on_done:
            on_done(result.path)
    run = ProposalRun()
    for path in (Path(p) for p in paths):
        result = results[path]
        if result.error is None:
            run.boxes[path] = result.boxes
            run.seconds[path] = result.seconds
        else:
            run.skipped.skip("image", None, result.error)
    return run


def fill_store(
    store: ProposalStore,
    images: Iterable[tuple[str, str | Path]],
    settings: SearchSettings,
    *,
    workers: int | None = None,
    on_done: Callable[[SearchResult], None] | None = None,
) -> SkipReport:
    """Search every ``(key, path)`` the store lacks (or holds stale boxes for) and store each result
    as soon as it arrives. Returns what could not be searched; those images get no row, so a rerun
    tries them again."""
    todo = {Path(path): key for key, path in images if not (Path(path).is_file() and store.is_current(key, path))}
    skipped = SkipReport()
    if todo:
        log.info("selective search for %d image(s) into %s", len(todo), store.path)
    for result in search_images(list(todo), settings, workers):
        if result.error is None:
            store.put(todo[result.path], Proposals.from_boxes(result.boxes), width=result.width, height=result.height,
                      stamp=FileStamp.of(result.path), seconds=result.seconds)
        else:
            skipped.skip("image", None, result.error)
        if on_done:
            on_done(result)
    return skipped
