"""What ``incdet detect`` and ``incdet propose`` share: their search, engine and shard options (checked
before any work starts), opening stored proposals, and the loop that runs a job's groups with a
progress bar (progress lines when stderr is not a terminal), reporting skipped images as they come
and turning Ctrl-C into a clean stop."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from incdet.errors import InputError

if TYPE_CHECKING:
    from incdet.engine.stages import Loader, Step, StepSpec
    from incdet.proposals.settings import SearchSettings
    from incdet.structures import ImageRecord, ImageResult

FOLDERS = "Folders are searched recursively (hidden files and folders skipped); each image is keyed by its path relative to " \
          "the folder given (sub/0001.jpg), so sub-folders may hold files of the same name."


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--superpixel-scale", type=float, default=2.0,
                        help="selective search: multiplies R-CNN's Felzenszwalb k {50,100}; 2 = GoogLeNet's doubled superpixels (default: %(default)s)")
    # Names checked when the job starts: importing them here would load OpenCV for every `--help`.
    parser.add_argument("--ss-backend", metavar="NAME", help="selective-search implementation (default: incdet's default backend)")
    parser.add_argument("--search-width", type=int, default=500, help="images are searched resized to this width (R-CNN: 500; 0 = full size; default: %(default)s)")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution (resumable: rerun the same command after a crash or Ctrl-C)")
    group.add_argument("--workers", type=int, help="selective-search processes (default: one per CPU; 0 = in the main process)")
    # The group size of incdet.engine.plan: enough crops to fill a device batch, small enough to resume finely.
    group.add_argument("--batch-images", type=int, default=8, metavar="G",
                       help="images per batch on the device, and per unit of resuming and sharding (default: %(default)s)")
    group.add_argument("--shard", metavar="I/N", help="process only shard I of N (every N-th batch of images), to split a job over N machines")
    group.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes, or Ray Data operators (default: %(default)s)")
    group.add_argument("--ray-address", metavar="ADDR", help="with --engine ray: a running Ray cluster (e.g. auto, or HOST:6379); default: start a local one")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    group.add_argument("--progress-seconds", type=float, default=60.0, metavar="S",
                       help="when stderr is not a terminal (a scheduler's log, nohup, a pipe): instead of the progress bar, a line "
                       "with images done, images/s and the time left every S seconds or every 5%% of the images (at least "
                       "100), whichever comes first, checked as each batch finishes (default: %(default)s)")


def search_settings(args: argparse.Namespace) -> SearchSettings:
    from incdet.proposals.settings import SearchSettings

    if args.search_width < 0:
        raise InputError(None, f"--search-width must be >= 0 (0 = full size), got {args.search_width}")
    backend = {"backend": args.ss_backend} if args.ss_backend else {}
    try:
        return SearchSettings(**backend, superpixel_scale=args.superpixel_scale, search_width=args.search_width)
    except ValueError as exc:
        flag = "--ss-backend" if "backend" in str(exc) else "--superpixel-scale"
        raise InputError(None, f"{flag}: {exc}") from None


def check_engine_arguments(args: argparse.Namespace) -> None:
    """The options every job has, so that a typo fails in a second rather than after an hour."""
    if args.workers is not None and args.workers < 0:
        raise InputError(None, f"--workers must be 0 or more, got {args.workers}")
    if args.batch_images < 1:
        raise InputError(None, f"--batch-images must be at least 1, got {args.batch_images}")
    if args.ray_address and args.engine != "ray":
        raise InputError(None, "--ray-address is only used with --engine ray")
    if not args.progress_seconds >= 0:
        raise InputError(None, f"--progress-seconds must be 0 or more, got {args.progress_seconds}")
    from incdet.devices import resolve_device

    if args.engine == "local":  # Ray's actors resolve it on their nodes, which may have GPUs this driver lacks
        resolve_device(args.device)


def start_engine(args: argparse.Namespace) -> None:
    """What an engine can start before the job loads its models: the local engine's fork server,
    which imports incdet for the workers (seconds) while this process loads the networks."""
    if args.engine == "local" and args.workers != 0:
        from incdet.engine.local import start_fork_server

        start_fork_server()


def open_stored(path: Path) -> tuple[Any, dict[str, str]]:
    """Stored proposals for a job: a proposal store (read per image) or a flat .npz/.json file (read
    whole), and how the job's settings record them."""
    from incdet.io import file_sha256
    from incdet.proposals.files import load_proposals
    from incdet.proposals.store import ProposalStore, is_store_path

    if is_store_path(path):
        stored = ProposalStore(path, readonly=True)
        return stored, {"file": path.name, **stored.identity()}
    return load_proposals(path), {"file": path.name, "sha256": file_sha256(path)}


@dataclass
class RunStats:
    """This run's share of a job: images finished, the seconds of each stage summed over them, and
    whether Ctrl-C stopped it."""

    images: int = 0
    skipped: int = 0
    seconds: Counter = field(default_factory=Counter)
    wall: float = 0.0
    interrupted: bool = False

    def per_stage(self) -> str:
        return ", ".join(f"{name} {sec / max(self.images, 1):.3f}" for name, sec in self.seconds.items())


def run_groups(groups: Sequence[Sequence[ImageRecord]], loader: Loader, spec: StepSpec, args: argparse.Namespace,
               write: Callable[[list[ImageResult]], None], step: Step | None = None, desc: str = "images") -> RunStats:
    """Run ``groups`` on the chosen engine, handing each group's results to ``write`` as they finish."""
    from tqdm import tqdm

    from incdet.engine import process
    from incdet.engine.local import interrupt_deferred

    if args.engine == "ray":
        _quiet_ray()
    stats = RunStats()
    start = time.perf_counter()
    total = sum(len(g) for g in groups)
    results_of = process(groups, loader, spec, engine=args.engine, workers=args.workers, ray_address=args.ray_address, step=step)
    if sys.stderr.isatty():
        progress = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
    else:
        progress = contextlib.nullcontext(ProgressLines(desc, total, args.progress_seconds))
    with progress as bar:
        try:
            try:
                # Not one next() more than there are groups: that one would end the engine, shutting its
                # workers down outside interrupt_deferred.
                for results in itertools.islice(results_of, len(groups)):
                    write(results)
                    for result in results:
                        for warning in result.warnings:
                            tqdm.write(f"warning: {warning}", file=sys.stderr)
                        if result.error is not None:
                            stats.skipped += 1
                            tqdm.write(f"skipped {result.error}", file=sys.stderr)
                        else:
                            stats.images += 1
                            stats.seconds.update(result.seconds)
                    bar.update(len(results))
            finally:
                with interrupt_deferred():
                    results_of.close()  # stops the worker processes now, not at garbage collection
        except KeyboardInterrupt as stop:
            stats.interrupted = True
            # The traceback's frames hold the engine: its workers shut down when it goes, and a second
            # Ctrl-C meanwhile changes nothing.
            with contextlib.suppress(KeyboardInterrupt), interrupt_deferred():
                stop.__traceback__ = None
    stats.wall = time.perf_counter() - start
    return stats


class ProgressLines:
    """Progress as log lines, for stderr that is not a terminal: there tqdm's bar is hidden, and a
    scheduler's log would show nothing until the job ends. A line every ``seconds`` or every 5% of
    the images (at least 100 images apart), whichever comes first, and one at the end::

        detect: 1200/40000 images (3.0%), 2.41 images/s, about 4 h 28 min left
    """

    def __init__(self, desc: str, total: int, seconds: float) -> None:
        self.desc, self.total, self.seconds = desc, total, seconds
        self.every = max(100, math.ceil(total / 20))
        self.done = 0
        self.start = time.monotonic()
        self.next_done, self.next_time = self.every, self.start + seconds

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.done >= min(self.next_done, self.total) or now >= self.next_time:
            print(self.line(now), file=sys.stderr, flush=True)
            self.next_done, self.next_time = self.done + self.every, now + self.seconds

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        rest = f"took {_duration(elapsed)}" if self.done >= self.total else f"about {_duration((self.total - self.done) / rate)} left"
        return f"{self.desc}: {self.done}/{self.total} images ({100 * self.done / max(self.total, 1):.1f}%), {rate:.3g} images/s, {rest}"


def _duration(seconds: float) -> str:
    """4 h 28 min, 12 min, 40 s: as precise as a person reading a log wants it."""
    minutes = round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min" if seconds >= 90 else f"{math.ceil(seconds)} s"


def _quiet_ray() -> None:
    """Ray's info lines and advice would bury the job's own (its logs stay in /tmp/ray/session_*/logs)."""
    import logging

    try:
        import ray.data  # noqa: F401 - it sets up its loggers on import; quieten them after that
    except ImportError:
        return  # the engine says how to install it
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def interrupted(saved: int, total: int, where: Path) -> int:
    print(f"incdet: interrupted; {saved} of {total} images are saved in {where}; run the same command again to resume",
          file=sys.stderr)
    return 130
