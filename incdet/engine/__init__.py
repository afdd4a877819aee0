"""Batch engines: a :class:`incdet.pipeline.Pipeline` (or its stage 1) over folders of any size.

``plan`` cuts the input into fixed groups and shards, ``stages`` holds the worker half (decode
once, search or read stored proposals) and the device half (MultiBox, ensemble, NMS on a group),
``local`` runs them with DataLoader workers, ``ray_engine`` as Ray Data operators, ``work``
keeps detection results in a resumable work folder, and ``fill`` runs selective search for the
images a proposal store lacks (for region training). :func:`process` is the one entry point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from incdet.engine.stages import Loader, Step, StepSpec
from incdet.errors import InputError
from incdet.structures import ImageRecord, ImageResult

ENGINES = ("local", "ray")


def process(
    groups: Sequence[Sequence[ImageRecord]],
    loader: Loader,
    spec: StepSpec,
    *,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    step: Step | None = None,
) -> Iterator[list[ImageResult]]:
    """Each group's results as it finishes. ``local``: ``workers`` processes decode and search (default
    one per CPU), the step runs here (``step``, if already built, else built from ``spec``);
    ``ray``: on the Ray instance at ``ray_address`` (None: a new local one)."""
    if engine == "ray":
        from incdet.engine.ray_engine import run_ray

        yield from run_ray(groups, loader, spec, ray_address)
    elif engine == "local":
        from incdet.engine.local import run_local

        yield from run_local(groups, loader, step or spec.build(), workers)
    else:
        raise InputError(None, f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
