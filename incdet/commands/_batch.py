"""What ``incdet detect`` and ``incdet propose`` share: their search, engine and shard options (checked
before any work starts), opening stored proposals, and the loop that runs a job's groups with a
progress bar, reporting skipped images as they come and turning Ctrl-C into a clean stop."""

from __future__ import annotations

import argparse
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
    group.add_argument("--batch-images", type=int, default=8, metavar="G",
                       help="images per batch on the device, and per unit of resuming and sharding (default: %(default)s)")
    group.add_argument("--shard", metavar="I/N", help="process only shard I of N (every N-th batch of images), to split a job over N machines")
    group.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes, or Ray Data operators (default: %(default)s)")
    group.add_argument("--ray-address", metavar="ADDR", help="with --engine ray: a running Ray cluster (e.g. auto, or HOST:6379); default: start a local one")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")


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
    from incdet.devices import resolve_device

    resolve_device(args.device)


def open_stored(path: Path) -> tuple[Any, dict[str, str]]:
    """Stored proposals for a job: a proposal store (read per image) or a flat .npz/.json file (read
    whole), and how the job's settings record them."""
    from incdet.io import file_sha256
    from incdet.proposals.files import load_proposals
    from incdet.proposals.store import ProposalStore, is_store_path

    stored = ProposalStore(path, readonly=True) if is_store_path(path) else load_proposals(path)
    return stored, {"file": path.name, "sha256": file_sha256(path)}


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

    if args.engine == "ray":
        _quiet_ray()
    stats = RunStats()
    start = time.perf_counter()
    results_of = process(groups, loader, spec, engine=args.engine, workers=args.workers, ray_address=args.ray_address, step=step)
    with tqdm(total=sum(len(g) for g in groups), desc=desc, unit="img", file=sys.stderr, disable=None) as bar:
        try:
            for results in results_of:
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
        except KeyboardInterrupt:
            stats.interrupted = True
        finally:
            results_of.close()  # stops the worker processes now, not at garbage collection
    stats.wall = time.perf_counter() - start
    return stats


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
