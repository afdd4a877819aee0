"""Running a job's groups on an engine: :func:`process` (each group's results, as they finish) and
:func:`run_groups` (the same with a progress bar or progress lines, reporting skipped images as they
come and turning Ctrl-C into a clean stop), which every batch job of :mod:`incdet.engine.jobs` uses.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from incdet.engine.steps import Loader, Step, StepFactory
from incdet.errors import InputError
from incdet.structures import ImageRecord, ImageResult

log = logging.getLogger(__name__)
ENGINES = ("local", "ray")


def process(
    groups: Sequence[Sequence[ImageRecord]],
    loader: Loader,
    step: Step | StepFactory,
    *,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
) -> Iterator[list[ImageResult]]:
    """Each group's results as it finishes. ``local``: ``workers`` processes decode and search (default
    one per CPU), ``step`` runs here (a :class:`StepFactory` is built first); ``ray``: on the Ray
    instance at ``ray_address`` (None: a new local one), each actor building its own step with
    ``step``, which must then be a :class:`StepFactory`."""
    if engine == "ray":
        from incdet.engine.ray_engine import run_ray

        if not isinstance(step, StepFactory):
            raise TypeError("the Ray engine builds the step on each actor: give it a StepFactory, not a built step")
        yield from run_ray(groups, loader, step, ray_address)
    elif engine == "local":
        from incdet.engine.local import run_local

        yield from run_local(groups, loader, step.build() if isinstance(step, StepFactory) else step, workers)
    else:
        raise InputError(None, f"the engine must be one of {', '.join(ENGINES)}, got {engine!r}")


@dataclass(frozen=True)
class Execution:
    """Where and how a job runs: the engine (``local`` or ``ray``), its search ``workers`` (default one
    per CPU; 0 = in this process), the Ray cluster (``ray_address``; None: a new local instance), the
    ``device`` Ray's actors run on, and what is said while it runs: a tqdm bar when stderr is a
    terminal, else a progress line every ``progress_seconds`` (or every 5% of the images); ``say``
    gets every skipped image, warning and progress line (default: this module's logger)."""

    engine: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    device: str = "auto"
    progress_seconds: float = 60.0
    say: Callable[[str], None] | None = None

    def check(self) -> None:
        """The options every job has, so that a typo fails in a second rather than after an hour."""
        if self.engine not in ENGINES:
            raise InputError(None, f"the engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.workers is not None and self.workers < 0:
            raise InputError(None, f"--workers must be 0 or more, got {self.workers}")
        if self.ray_address and self.engine != "ray":
            raise InputError(None, "--ray-address is only used with --engine ray")
        if not self.progress_seconds >= 0:
            raise InputError(None, f"--progress-seconds must be 0 or more, got {self.progress_seconds}")
        from incdet.devices import resolve_device

        if self.engine == "local":  # Ray's actors resolve it on their nodes, which may have GPUs this driver lacks
            resolve_device(self.device)


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


def run_groups(groups: Sequence[Sequence[ImageRecord]], loader: Loader, step: Step | StepFactory, execution: Execution,
               write: Callable[[list[ImageResult]], None], desc: str = "images") -> RunStats:
    """Run ``groups`` as ``execution`` says (``step``: as :func:`process` takes it), handing each
    group's results to ``write`` as they finish."""
    from tqdm import tqdm

    from incdet.engine.local import interrupt_deferred

    if execution.engine == "ray":
        _quiet_ray()
    say = execution.say or log.warning
    stats = RunStats()
    start = time.perf_counter()
    total = sum(len(g) for g in groups)
    results_of = process(groups, loader, step, engine=execution.engine, workers=execution.workers,
                         ray_address=execution.ray_address)
    if sys.stderr.isatty():
        progress = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
    else:
        progress = contextlib.nullcontext(ProgressLines(desc, total, execution.progress_seconds, execution.say or log.info))
    with progress as bar:
        try:
            try:
                # Not one next() more than there are groups: that one would end the engine, shutting its
                # workers down outside interrupt_deferred.
                for results in itertools.islice(results_of, len(groups)):
                    write(results)
                    for result in results:
                        for warning in result.warnings:
                            say(f"warning: {warning}")
                        if result.error is not None:
                            stats.skipped += 1
                            say(f"skipped {result.error}")
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
    """Progress as lines, for stderr that is not a terminal: there tqdm's bar is hidden, and a
    scheduler's log would show nothing until the job ends. A line every ``seconds`` or every 5% of
    the images (at least 100 images apart), whichever comes first, and one at the end::

        detect: 1200/40000 images (3.0%), 2.41 images/s, about 4 h 28 min left
    """

    def __init__(self, desc: str, total: int, seconds: float, say: Callable[[str], None] = log.info) -> None:
        self.desc, self.total, self.seconds, self.say = desc, total, seconds, say
        self.every = max(100, math.ceil(total / 20))
        self.done = 0
        self.start = time.monotonic()
        self.next_done, self.next_time = self.every, self.start + seconds

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.done >= min(self.next_done, self.total) or now >= self.next_time:
            self.say(self.line(now))
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
    try:
        import ray.data  # noqa: F401 - it sets up its loggers on import; quieten them after that
    except ImportError:
        return  # the engine says how to install it
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
