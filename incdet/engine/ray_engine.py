"""The Ray Data engine: the same two halves as the local engine, as Ray Data operators.

    groups --map(load_group, num_cpus=1)--> decoded images + proposals   (CPU tasks)
           --map_batches(StepActor, num_gpus=1 each when there are GPUs)--> results   (actors: models loaded once)
           --iter_rows() on the driver--> the same work folder or proposal store as a local run

A row is one group (see :mod:`incdet.engine.plan`), so each actor batch is exactly the group a
local run would form and the results are the same. Ray streams the operators with backpressure,
so memory stays flat. Every node must see the images (and a stored-proposals file) at the same
path, e.g. on a shared file system; ``ray`` is imported only here (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from incdet.engine.stages import Loader, StepSpec, init_worker
from incdet.errors import InputError
from incdet.structures import ImageRecord, ImageResult

SEARCH_MEMORY = 2**30  # bytes reserved per selective-search task (its worker process included)


def _load_group(row: dict[str, Any], loader: Loader) -> dict[str, Any]:
    init_worker()  # OpenCV and torch: one thread per task, as Ray reserved one CPU
    return {"loaded": [loader(record) for record in row["records"]]}


class _StepActor:
    """Loads the models once per actor; each call runs the step on one group."""

    def __init__(self, spec: StepSpec) -> None:
        self.step = spec.build(device="auto")  # the GPU Ray gave this actor, if any

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"results": [self.step(list(group)) for group in batch["loaded"]]}


def run_ray(groups: Sequence[Sequence[ImageRecord]], loader: Loader, spec: StepSpec, address: str | None = None) -> Iterator[list[ImageResult]]:
    """Each group's results as Ray finishes it (not in order), on the Ray instance at ``address``
    (``auto``: a running cluster; None: a new local one, shut down at the end)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError(None, "--engine ray needs Ray: pip install -e \".[ray]\"") from None
    if not groups:
        return
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(None, f"--ray-address {address}: cannot connect to Ray ({type(exc).__name__}: {exc})") from None
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        dataset = ray.data.from_items([{"records": list(group)} for group in groups], override_num_blocks=len(groups))
        # The memory request (what searching a 500 px wide image may take) is one the actors do not make,
        # so Ray keeps the searches in CPU tasks of their own instead of fusing them into the actors.
        dataset = dataset.map(_load_group, fn_kwargs={"loader": loader}, num_cpus=1, memory=SEARCH_MEMORY)
        dataset = dataset.map_batches(_StepActor, fn_constructor_kwargs={"spec": spec}, batch_size=1, num_cpus=1,
                                      num_gpus=1 if gpus else 0, compute=ray.data.ActorPoolStrategy(size=max(gpus, 1)))
        for row in dataset.iter_rows():
            yield row["results"]
    finally:
        if started:
            ray.shutdown()
