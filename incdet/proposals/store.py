"""Proposals for many images: computing them in parallel and caching them on disk.

Selective search is the slow stage of R-CNN (seconds per image), so it runs once over a process
pool and later stages read the cached boxes. Files are keyed by image file name: ``.npz`` (one
float32 (N, 4) xyxy array per image, compact) or ``.json`` (``{file_name: [[x1, y1, x2, y2], ...]}``,
readable by other tools).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from incdet.errors import InputError
from incdet.io import atomic_path, read_image, write_text
from incdet.proposals.selective_search import selective_search

SUFFIXES = (".npz", ".json")


def check_store_path(path: str | Path) -> Path:
    """Fail before hours of computing if the output format is unknown."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(path, f"proposal files must end in {' or '.join(SUFFIXES)}")
    return path


def save_proposals(path: str | Path, proposals: Mapping[str, np.ndarray]) -> None:
    """Write ``{image file name: (N, 4) xyxy boxes}`` atomically; the format follows the suffix."""
    path = check_store_path(path)
    arrays = {name: np.asarray(boxes, np.float32).reshape(-1, 4) for name, boxes in proposals.items()}
    if path.suffix.lower() == ".npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return
    # One image per line keeps big files diffable; str() of a float32 is its shortest exact form,
    # so loading gives back the same float32 values.
    lines = [
        f"{json.dumps(name)}: {json.dumps([[float(str(v)) for v in box] for box in boxes])}"
        for name, boxes in arrays.items()
    ]
    write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


def _checked_boxes(path: Path, name: str, value: object) -> np.ndarray:
    try:
        boxes = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(path, f"entry {name!r}: boxes are not numbers") from None
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(path, f"entry {name!r}: expected a list of [x1, y1, x2, y2] boxes, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise InputError(path, f"entry {name!r}: boxes contain NaN or infinity")
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise InputError(path, f"entry {name!r}: a box has x2 < x1 or y2 < y1")
    return boxes


def load_proposals(path: str | Path) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_proposals` (or by hand) into float32 (N, 4) arrays."""
    path = check_store_path(path)
    if not path.is_file():
        raise InputError(path, "no such proposal file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                raw = {name: data[name] for name in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise InputError(path, f"not a readable .npz proposal file ({exc})") from None
    else:
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise InputError(path, "expected a JSON object {file_name: [[x1, y1, x2, y2], ...]}")
    return {name: _checked_boxes(path, name, value) for name, value in raw.items()}


@dataclass
class ProposalRun:
    """Outcome of a batch: boxes and search seconds per processed image, and the skipped ones."""

    boxes: dict[Path, np.ndarray] = field(default_factory=dict)
    seconds: dict[Path, float] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def _propose_one(
    path: Path, superpixel_scale: float, min_size: int, search_width: int, seed: int
) -> tuple[np.ndarray | None, float, str | None]:
    start = time.perf_counter()
    try:
        image = read_image(path)
        height, width = image.shape[:2]
        if min(height, width) < min_size:
            raise InputError(path, f"image is {width}x{height} px, smaller than the {min_size} px minimum region size")
        boxes = selective_search(image, superpixel_scale, min_size=min_size, search_width=search_width, seed=seed)
    except InputError as exc:
        return None, 0.0, str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd image must not abort a batch of thousands
        return None, 0.0, f"{path}: selective search failed ({type(exc).__name__}: {exc})"
    return boxes, time.perf_counter() - start, None


def _init_worker() -> None:
    # Each worker is one core's worth of work; library thread pools would only oversubscribe.
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def propose_images(
    paths: Sequence[str | Path],
    superpixel_scale: float = 2.0,
    *,
    min_size: int = 20,
    search_width: int = 500,
    seed: int = 0,
    workers: int | None = None,
    on_done: Callable[[Path], None] | None = None,
) -> ProposalRun:
    """Selective search over many images with ``workers`` processes (default: all CPUs).

    Unreadable images (or ones the search fails on) are listed in ``failures`` and never stop the
    batch. ``on_done`` is called once per finished image, e.g. to advance a progress bar.
    """
    paths = [Path(p) for p in paths]
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths) or 1))
    args = (superpixel_scale, min_size, search_width, seed)
    results: dict[Path, tuple[np.ndarray | None, float, str | None]] = {}
    if workers == 1:
        for path in paths:
            results[path] = _propose_one(path, *args)
            if on_done:
                on_done(path)
    else:
        # forkserver: forking a parent that already runs torch/OpenMP threads can deadlock children.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["incdet.proposals.selective_search"])
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(_propose_one, path, *args): path for path in paths}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done:
                    on_done(futures[future])
    run = ProposalRun()
    for path in paths:
        boxes, seconds, error = results[path]
        if error is None:
            run.boxes[path] = boxes
            run.seconds[path] = seconds
        else:
            run.failures.append((path, error))
    return run
