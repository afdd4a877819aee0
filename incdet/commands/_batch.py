"""What ``incdet detect`` and ``incdet propose`` share: their search, engine and shard options, where
a job's messages go (skipped images, warnings and progress lines to stderr, under the progress bar
on a terminal), and the line an interrupted job ends with. The jobs themselves are
:mod:`incdet.engine.jobs`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from incdet.errors import InputError

if TYPE_CHECKING:
    from incdet.engine.run import Execution
    from incdet.proposals.settings import SearchSettings

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


def start_workers(args: argparse.Namespace) -> None:
    """The local engine's fork server, when the job will search images in workers (IMAGES given, not
    ``--merge``), started before this process imports torch (call it first): it imports incdet for the
    search workers (seconds, on another core) while this process imports and loads its networks
    (:mod:`incdet.engine.forkserver`)."""
    if args.images and args.merge is None and args.engine == "local" and (args.workers is None or args.workers > 0):
        from incdet.engine.forkserver import start_fork_server

        start_fork_server()


def execution(args: argparse.Namespace) -> Execution:
    """Where and how the job runs, as the engine options say, checked."""
    from incdet.engine.run import Execution

    chosen = Execution(args.engine, args.workers, args.ray_address, args.device, args.progress_seconds, say)
    chosen.check()
    return chosen


def say(line: str) -> None:
    """A skipped image, a warning or a progress line: to stderr, under the progress bar if there is one."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def interrupted(saved: int, total: int, where: Path) -> int:
    print(f"incdet: interrupted; {saved} of {total} images are saved in {where}; run the same command again to resume",
          file=sys.stderr)
    return 130
