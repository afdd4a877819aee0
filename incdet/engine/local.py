"""The local engine: selective search in DataLoader worker processes, the rest in this process.

Why a ``torch.utils.data.DataLoader`` rather than a process pool: its workers hand back the decoded image with its
boxes, so each image is decoded once; at most ``prefetch_factor`` images per worker wait in memory
(a pool takes every image at once and would pile up decoded images whenever classification is
the slower side), so memory stays flat in the number of images; results come back in input order,
which fixes the groups. While the main process classifies one group, the workers already search the
next images.

Ctrl-C: a terminal sends SIGINT to every process of the job. Only the main process handles it (one
line, exit 130, incdet.engine.run.run_groups); the fork server and the workers never see it
(:func:`incdet.engine.forkserver.start_fork_server`), and their start and shutdown are not cut short by it
(:func:`interrupt_deferred`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from incdet.engine.forkserver import start_fork_server
from incdet.engine.plan import RecordTable
from incdet.engine.steps import Loaded, Loader, Step, init_worker
from incdet.structures import ImageRecord, ImageResult


class _Images(Dataset):
    def __init__(self, records: Sequence[ImageRecord], loader: Loader) -> None:
        self.records = records  # a RecordTable for workers: each maps the files instead of unpickling a list
        self.loader = loader

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Loaded:
        return self.loader(self.records[index])


def _as_is(item: Loaded) -> Loaded:
    return item  # DataLoader's default would turn the numpy arrays into tensors


def _worker_init(_: int, main_pid: int, environment: dict[str, str]) -> None:
    # The job's environment, not the fork server's: it was started by an earlier job of this process (a
    # notebook that set AWS_* variables for s3:// images since).
    os.environ.clear()
    os.environ.update(environment)
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


@contextlib.contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Ctrl-C during the block is raised when it ends (or ignored, as SIGINT's own handler says).

    For what must not be cut short: the workers' start (:func:`load_images`) and their shutdown,
    which the DataLoader does in ``__del__``, where a KeyboardInterrupt is printed as "Exception
    ignored ..." with a traceback and then lost. Only the main thread gets KeyboardInterrupt at all,
    and only it may set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


def load_images(records: Sequence[ImageRecord], loader: Loader, workers: int | None = None, ahead: int = 16) -> Iterator[Loaded]:
    """``loader`` applied to every record, in order, over ``workers`` processes (default: one per
    CPU; 0 = in this process), keeping about ``ahead`` images in flight."""
    workers = min(os.cpu_count() or 1, len(records)) if workers is None else min(workers, len(records))
    if not workers:
        yield from map(loader, records)
        return
    context = start_fork_server()
    with tempfile.TemporaryDirectory(prefix="incdet-records-") as folder:
        table = RecordTable.write(records, folder)
        loaded = None
        try:
            # Starting a worker waits for the fork server's imports (seconds); a worker forked after this
            # process has gone prints a traceback. So a Ctrl-C meanwhile ends the job once they have started.
            with interrupt_deferred():
                loaded = iter(DataLoader(_Images(table, loader), batch_size=None, num_workers=workers, collate_fn=_as_is,
                                         multiprocessing_context=context,
                                         worker_init_fn=functools.partial(_worker_init, main_pid=os.getpid(), environment=dict(os.environ)),
                                         prefetch_factor=max(2, -(-ahead // workers))))
            yield from loaded
        finally:
            with interrupt_deferred():
                del loaded  # the workers end (joined) before the folder of their records goes, however the job ends


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
