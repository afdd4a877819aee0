"""The Ray Data engine: the same two halves as the local engine, as Ray Data operators.

    on GPUs:  groups --map(load_group, num_cpus=1)--> decoded images + proposals   (CPU tasks)
                     --map_batches(StepActor, num_gpus=1 each)--> results   (actors: models loaded once)
    on CPUs:  groups --map_batches(StepActor with the loader, num_cpus=a node's CPUs, two calls at once)--> results
    both:     results --iter_rows() on the driver--> the same work folder or proposal store as a local run

On CPUs one actor fills a node (at most MAX_LANES CPUs; several on a bigger node) and runs it as the
local engine runs a machine: it searches the next group on a thread per CPU while it classifies the
group before on the ensemble's lanes. It imports torch and loads the networks once per node, where
an actor per CPU did so once per core: 0.90x the local engine's images/s before, 0.97-0.98x after
(bench/detect.py --sections ray, 40 images, 2 cores). Split into search tasks and a classifier
actor, as on GPUs, the actor's core was the bottleneck while the search cores waited for it (0.80x).

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
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from incdet.classify.ensemble import MAX_LANES
from incdet.engine.steps import Loader, StepFactory, init_worker
from incdet.errors import InputError
from incdet.structures import ImageRecord, ImageResult

SEARCH_MEMORY = 2**30  # bytes reserved per process that searches: a GPU layout's search task or a CPU actor
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
    itself (it does not rebuild one from its message).

    With the loader (the CPU layout) an actor holds ``cpus`` CPUs, ideally a whole node, and works as
    the local engine does: Ray runs two calls at once (ActorPoolStrategy's true multi-threading), so
    one group's images are searched on ``cpus`` threads (OpenCV releases the GIL) while the group
    before is classified on the ensemble's lanes, one group at a time. One actor per node imports
    torch and loads the networks once, not once per core.
    """

    def __init__(self, factory: StepFactory, device: str, loader: Loader | None = None, cpus: int = 1) -> None:
        import ray

        node = f"{socket.gethostname()} (Ray node {ray.get_runtime_context().get_node_id()})"
        self.loader = loader
        self.classifying = threading.Lock()
        loading = 0
        if loader is not None:
            # A proposal store's SQLite connection belongs to the thread that opened it: stored proposals are
            # read on one thread, the same for every call.
            loading = cpus if loader.stored is None else 1
            self.loads = ThreadPoolExecutor(loading, thread_name_prefix="incdet-load")
            init_worker()  # OpenCV: one thread per search
            torch.set_num_threads(cpus)  # the ensemble takes a lane per CPU
        self.step, self.refused = None, ""
        try:
            self.step = factory.build(device, node)
        except InputError as exc:
            self.refused = str(exc)
        if loader is not None:
            # As the local engine's run_local: torch (MultiBox, the warps) gets the CPUs the loads leave, at least
            # one thread; more threads than cores make OpenMP's threads wait on each other at every layer.
            torch.set_num_threads(max(1, cpus - loading))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        groups = list(batch["records"] if self.loader else batch["loaded"])
        if self.refused:
            return {"results": [[] for _ in groups], "refused": [self.refused] * len(groups)}
        results = []
        for group in groups:
            loaded = list(self.loads.map(self.loader, group)) if self.loader else list(group)
            with self.classifying:
                results.append(self.step(loaded))
        return {"results": results, "refused": [""] * len(groups)}


def _actor_cpus(nodes: list[dict[str, Any]]) -> int:
    """CPUs per CPU actor: as many as the smallest live node has, and memory for as many searches
    (one actor fills it), at most MAX_LANES."""
    fits = [min(int(node["Resources"].get("CPU", 0)), int(node["Resources"].get("memory", 0) // SEARCH_MEMORY))
            for node in nodes if node.get("Alive") and node["Resources"].get("CPU", 0) >= 1]
    return max(1, min(MAX_LANES, min(fits, default=1)))


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
        if gpus:
            pool = ray.data.ActorPoolStrategy(min_size=max(1, min(int(resources.get("GPU", 0)), len(groups))), max_size=None)
            # The memory request (what searching a 500 px wide image may take) is one the actors do not make,
            # so Ray keeps the searches in CPU tasks of their own instead of fusing them into the actors.
            dataset = dataset.map(_load_group, fn_kwargs={"loader": loader}, num_cpus=1, memory=SEARCH_MEMORY)
            dataset = dataset.map_batches(_StepActor, fn_constructor_kwargs={"factory": factory, "device": GPU_ACTOR["device"]},
                                          batch_size=1, num_cpus=1, num_gpus=GPU_ACTOR["num_gpus"], compute=pool)
        else:
            cpus = _actor_cpus(ray.nodes())
            pool = ray.data.ActorPoolStrategy(min_size=max(1, min(int(resources.get("CPU", 0)) // cpus, len(groups))), max_size=None,
                                              max_concurrent_calls_per_actor=2, enable_true_multi_threading=True)
            dataset = dataset.map_batches(_StepActor, fn_constructor_kwargs={"factory": factory, "device": "cpu", "loader": loader, "cpus": cpus},
                                          batch_size=1, num_cpus=cpus, memory=cpus * SEARCH_MEMORY, compute=pool)
        for row in dataset.iter_rows():
            if row["refused"]:
                raise InputError(None, row["refused"])
            yield row["results"]
    finally:
        if started:
            ray.shutdown()
