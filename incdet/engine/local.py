"""The local engine: selective search in DataLoader worker processes, the rest in this process.

Why a ``torch.utils.data.DataLoader`` rather than a process pool: its workers hand back the decoded image with its
boxes, so each image is decoded once; at most ``prefetch_factor`` images per worker wait in memory
(a pool takes every image at once and would pile up decoded images whenever classification is
the slower side), so memory stays flat in the number of images; results come back in input order,
which fixes the groups; and its workers leave Ctrl-C to the main process without a traceback.
While the main process classifies one group, the workers already search the next images.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from incdet.engine.stages import Loaded, Loader, Step, init_worker
from incdet.structures import ImageRecord, ImageResult


class _Images(Dataset):
    def __init__(self, records: Sequence[ImageRecord], loader: Loader) -> None:
        self.records = list(records)
        self.loader = loader

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Loaded:
        return self.loader(self.records[index])


def _as_is(item: Loaded) -> Loaded:
    return item  # DataLoader's default would turn the numpy arrays into tensors


def _worker_init(_: int, main_pid: int) -> None:
    init_worker()
    threading.Thread(target=_exit_with, args=(main_pid,), daemon=True, name="incdet-main-watch").start()


def _exit_with(main_pid: int) -> None:
    """End this worker as soon as the main process is gone, however it died (SIGKILL, the OOM killer).

    DataLoader's own watchdog watches the worker's parent, which under forkserver is the fork server;
    and the fork server lives as long as any worker does, so without this both would outlive a
    killed job forever."""
    try:
        handle = os.pidfd_open(main_pid)
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): poll instead
        while _alive(main_pid):
            time.sleep(1.0)
    else:
        select.select([handle], [], [])  # readable once the process has exited
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def load_images(records: Sequence[ImageRecord], loader: Loader, workers: int | None = None, ahead: int = 16) -> Iterator[Loaded]:
    """``loader`` applied to every record, in order, over ``workers`` processes (default: one per
    CPU; 0 = in this process), keeping about ``ahead`` images in flight."""
    workers = min(os.cpu_count() or 1, len(records)) if workers is None else min(workers, len(records))
    # forkserver: forking a parent that already runs torch/OpenMP threads can deadlock children.
    context = multiprocessing.get_context("forkserver") if workers else None
    if context is not None:
        context.set_forkserver_preload(["incdet.engine.stages"])
    yield from DataLoader(_Images(records, loader), batch_size=None, num_workers=workers, collate_fn=_as_is,
                          multiprocessing_context=context,
                          worker_init_fn=functools.partial(_worker_init, main_pid=os.getpid()) if workers else None,
                          prefetch_factor=max(2, -(-ahead // workers)) if workers else None)


def run_local(groups: Sequence[Sequence[ImageRecord]], loader: Loader, step: Step, workers: int | None = None) -> Iterator[list[ImageResult]]:
    """Each group's results, as it finishes (groups in order)."""
    records = [record for group in groups for record in group]
    workers = min(os.cpu_count() or 1, len(records)) if workers is None else workers
    # Two groups in flight: the workers search the next group while this process classifies one.
    ahead = 2 * max((len(g) for g in groups), default=1)
    loaded = load_images(records, loader, workers, ahead)
    # The workers keep `workers` cores busy; torch here gets the rest (at least one thread). More
    # threads than cores makes OpenMP's threads wait on each other at every layer.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
    try:
        for group in groups:
            yield step([next(loaded) for _ in group])
    finally:
        torch.set_num_threads(threads)
