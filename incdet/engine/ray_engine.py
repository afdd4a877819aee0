"""The Ray Data engine: the same two halves as the local engine, as Ray Data operators.

    on GPUs:  groups --map(load_group, num_cpus=1)--> decoded images + proposals   (CPU tasks)
                     --map_batches(StepActor, num_gpus=1 each)--> results   (actors: models loaded once)
    on CPUs:  groups --map_batches(StepActor with the loader, num_cpus=1 each)--> results
    both:     results --iter_rows() on the driver--> the same work folder or proposal store as a local run

On CPUs each actor searches its group and classifies it on the CPU Ray reserved for it (its
ensemble's two lanes may use a second core while another actor's is idle, as at a job's end).
Split into search tasks and a classifier actor, as on GPUs, the actor's core is the bottleneck
(the classifiers cost more than the search) while the search cores wait for it: measured 0.80x the
local engine on 2 cores (bench/detect.py --sections ray).

A row is one group (see :mod:`incdet.engine.plan`), so each actor batch is exactly the group a
local run would form and the results are the same. Ray streams the operators with backpressure,
so memory stays flat, and grows the actor pool as the cluster gains GPUs. Every node must see the
images (and a stored-proposals file) at the same absolute path, e.g. on a shared file system; the
shipped models come from each node's own install, and every model file is checked against the
SHA-256 the job recorded. Only results travel back: detections and proposal counts (proposals
themselves for ``incdet propose``), drawings as PNG bytes for the driver to write. ``ray`` is
imported only here (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from incdet.engine.steps import Loader, StepFactory, init_worker
from incdet.errors import InputError
from incdet.structures import ImageRecord, ImageResult

SEARCH_MEMORY = 2**30  # bytes reserved per process that searches: a GPU layout's search task or a CPU actor
SEARCH_THREADS = 2  # per CPU actor, as its ensemble's lanes
GROUPS_PER_BLOCK = 4  # a search task takes a few groups (half a minute of work): scheduling costs nothing next to it
MAX_BLOCKS = 10_000  # what the driver tracks, however many images: 1M images in groups of 8 are 125k groups
# What a classifier actor asks for on GPUs (tests/test_ray_cluster.py runs that layout on CPUs with device cpu, 0 GPUs).
GPU_ACTOR = {"device": "cuda", "num_gpus": 1}


def _load_group(row: dict[str, Any], loader: Loader) -> dict[str, Any]:
    init_worker()  # OpenCV and torch: one thread per task, as Ray reserved one CPU
    return {"loaded": [loader(record) for record in row["records"]]}


class _StepActor:
    """Loads the models once per actor (each checked against the job's SHA-256); each call runs the
    step on one group, loading it first when given the ``loader`` (rows of records, not of loaded
    images). A refusal travels back as a row's ``refused`` line: Ray cannot carry an InputError
    itself (it does not rebuild one from its message)."""

    def __init__(self, factory: StepFactory, device: str, loader: Loader | None = None) -> None:
        import ray

        if loader is not None:
            init_worker()  # OpenCV and torch: one thread per call (the actor runs two searches, and the ensemble two lanes)
        node = f"{socket.gethostname()} (Ray node {ray.get_runtime_context().get_node_id()})"
        self.step, self.loader, self.refused = None, loader, ""
        # OpenCV's search releases the GIL: while every actor is busy the threads share the actor's CPU,
        # and an actor left working alone (a job's last groups) searches on two cores (`bench/detect.py
        # --sections ray`: 0.88x the local engine before, 0.96x after, on 40 images). Stored proposals
        # are read on this thread: a proposal store's SQLite connection belongs to the thread that opened it.
        searching = loader is not None and loader.stored is None
        self.searches = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="incdet-search") if searching else None
        try:
            self.step = factory.build(device, node)
        except InputError as exc:
            self.refused = str(exc)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        groups = list(batch["records"] if self.loader else batch["loaded"])
        if self.refused:
            results = [[] for _ in groups]
        elif self.loader:
            load = self.searches.map if self.searches else map
            results = [self.step(list(load(self.loader, group))) for group in groups]
        else:
            results = [self.step(list(group)) for group in groups]
        return {"results": results, "refused": [self.refused] * len(groups)}


def _blocks(groups: int, cpus: int) -> int:
    """Two blocks per CPU, or a few groups per block when there are more, never over MAX_BLOCKS."""
    return max(1, min(groups, max(2 * cpus, -(-groups // GROUPS_PER_BLOCK)), MAX_BLOCKS))


def _on_gpus(device: str, resources: dict[str, float]) -> bool:
    """Whether the actors ask for a GPU: ``cuda`` always (an autoscaling cluster starts GPU nodes for
    them), ``auto`` when the cluster has one now, ``cpu`` never."""
    return device.startswith("cuda") or (device == "auto" and resources.get("GPU", 0) > 0)


def run_ray(groups: Sequence[Sequence[ImageRecord]], loader: Loader, factory: StepFactory, address: str | None = None) -> Iterator[list[ImageResult]]:
    """Each group's results as Ray finishes it (not in order), on the Ray instance at ``address``
    (``auto``: a running cluster; None: a new local one, shut down at the end); the actors run on
    ``factory``'s device (``auto``, ``cpu``, ``cuda``)."""
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
            # Workers' output (a failed task's traceback) reaches this terminal; the CLI quietens Ray's own logging.
            ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(None, f"--ray-address {address}: cannot connect to Ray ({type(exc).__name__}: {exc})") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.enable_fallback_to_arrow_object_ext_type = True  # rows are Python objects: said, so no worker warns of it
        resources = ray.cluster_resources()
        gpus = _on_gpus(factory.arguments.get("device", "auto"), resources)
        blocks = _blocks(len(groups), int(resources.get("CPU", 1)))
        dataset = ray.data.from_items([{"records": list(group)} for group in groups], override_num_blocks=blocks)
        # As many actors as the cluster's GPUs (or CPUs) allow now, all started at once (growing the pool
        # one actor at a time left a core idle for the first 6 s), and more as it gains them.
        now = int(resources.get("GPU" if gpus else "CPU", 0))
        pool = ray.data.ActorPoolStrategy(min_size=max(1, min(now, len(groups))), max_size=None)
        if gpus:
            # The memory request (what searching a 500 px wide image may take) is one the actors do not make,
            # so Ray keeps the searches in CPU tasks of their own instead of fusing them into the actors.
            dataset = dataset.map(_load_group, fn_kwargs={"loader": loader}, num_cpus=1, memory=SEARCH_MEMORY)
            dataset = dataset.map_batches(_StepActor, fn_constructor_kwargs={"factory": factory, "device": GPU_ACTOR["device"]},
                                          batch_size=1, num_cpus=1, num_gpus=GPU_ACTOR["num_gpus"], compute=pool)
        else:
            dataset = dataset.map_batches(_StepActor, fn_constructor_kwargs={"factory": factory, "device": "cpu", "loader": loader},
                                          batch_size=1, num_cpus=1, memory=SEARCH_MEMORY, compute=pool)
        for row in dataset.iter_rows():
            if row["refused"]:
                raise InputError(None, row["refused"])
            yield row["results"]
    finally:
        if started:
            ray.shutdown()
