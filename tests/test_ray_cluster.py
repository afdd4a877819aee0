"""``--engine ray`` on a real two-node Ray cluster, started in another folder than the one ``incdet``
runs in (so a worker resolving a relative path would miss every file): relative image, model and
proposal paths, the shipped models found in each node's own install, drawings written by the
driver, the local engine's detections and proposals exactly, and a model file whose bytes differ
on a node refused in one line.

Six small demo images, one shipped model and no MultiBox (but for one propose run) keep each run to
seconds; the cluster (a head and a second node, two CPUs each: an actor on each that searches one
group on two threads while it classifies another, or in the GPU layout classifier actors and search
tasks) is started once for the module."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import ray
import torch
from ray.cluster_utils import Cluster

import incdet.pipeline
from incdet.classify.ensemble import MAX_LANES
from incdet.cli import main
from incdet.data.demo import generate_demo
from incdet.engine import ray_engine
from incdet.engine.ray_engine import MAX_BLOCKS, SEARCH_MEMORY, _actor_cpus, _blocks
from incdet.engine.steps import ModelFile
from incdet.errors import InputError
from incdet.io import file_sha256
from incdet.proposals.store import ProposalStore
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS, WEIGHTS_DIR


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node, their workers in a folder of their own; two CPUs each, so a CPU actor
    searches on two threads beside its classifier."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cluster"))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """The folder ``incdet`` runs in: six demo images under ``images/``."""
    root = tmp_path_factory.mktemp("job")
    generate_demo(root / "demo", seed=0, counts={"train": 0, "val": 0, "test": 6})
    (root / "demo" / "test" / "images").rename(root / "images")
    return root


def _relative(path: Path) -> str:
    return os.path.relpath(path)  # as a user in the job folder types it


def _on_ray(cluster: Cluster, *args: str) -> list[str]:
    return [*args, "--engine", "ray", "--ray-address", cluster.address]


def test_detect_on_the_cluster_gives_the_local_engines_detections_and_drawings(cluster, job, monkeypatch, capsys) -> None:
    monkeypatch.chdir(job)
    args = ["detect", "images", "--model", _relative(DEMO_REGION_MODELS[0]), "--no-multibox", "--batch-images", "2",
            "--workers", "1", "--draw-threshold", "0.2"]
    assert main([*args, "--out", "local.json", "--draw", "local_drawn"]) == 0
    assert main(_on_ray(cluster, *args, "--out", "ray.json", "--draw", "ray_drawn")) == 0
    assert "skipped" not in capsys.readouterr().err
    assert Path("ray.json").read_bytes() == Path("local.json").read_bytes()
    drawn = sorted(p.name for p in Path("local_drawn").iterdir())
    assert len(drawn) == 6 and sorted(p.name for p in Path("ray_drawn").iterdir()) == drawn
    assert all((Path("ray_drawn") / name).read_bytes() == (Path("local_drawn") / name).read_bytes() for name in drawn)


def test_the_gpu_layout_search_tasks_then_classifier_actors_gives_the_local_engines_detections(cluster, job, monkeypatch) -> None:
    # On GPUs the searches run as CPU tasks and the actors only classify: that layout, its actors on a CPU.
    monkeypatch.chdir(job)
    monkeypatch.setattr(ray_engine, "_on_gpus", lambda device, resources: True)
    monkeypatch.setattr(ray_engine, "GPU_ACTOR", {"device": "cpu", "num_gpus": 0})
    args = ["detect", "images", "--model", _relative(DEMO_REGION_MODELS[0]), "--no-multibox", "--batch-images", "2", "--workers", "1"]
    assert main([*args, "--out", "split_local.json"]) == 0
    assert main(_on_ray(cluster, *args, "--out", "split_ray.json")) == 0
    assert Path("split_ray.json").read_bytes() == Path("split_local.json").read_bytes()


def test_propose_and_detect_from_a_stored_file_on_the_cluster_equal_the_local_engine(cluster, job, monkeypatch) -> None:
    monkeypatch.chdir(job)
    args = ["propose", "images", "--multibox", _relative(DEMO_MULTIBOX), "--batch-images", "2", "--workers", "1"]
    assert main([*args, "--out", "local.db"]) == 0
    assert main(_on_ray(cluster, *args, "--out", "ray.db")) == 0
    local, on_ray = ProposalStore("local.db", readonly=True), ProposalStore("ray.db", readonly=True)
    assert sorted(on_ray) == sorted(local) and len(local) == 6
    for key in local:
        assert torch.equal(on_ray[key].boxes, local[key].boxes) and torch.equal(on_ray[key].source, local[key].source)

    args = ["detect", "images", "--proposals", "ray.db", "--model", _relative(DEMO_REGION_MODELS[0]), "--batch-images", "2",
            "--workers", "1"]
    assert main([*args, "--out", "stored_local.json"]) == 0
    assert main(_on_ray(cluster, *args, "--out", "stored_ray.json")) == 0
    assert Path("stored_ray.json").read_bytes() == Path("stored_local.json").read_bytes()


def test_a_model_file_that_differs_on_a_node_is_refused_in_one_line(cluster, job, monkeypatch, capsys) -> None:
    monkeypatch.chdir(job)
    shutil.copy(DEMO_REGION_MODELS[0], "model.pt")
    recorded = incdet.pipeline.model_record
    # The driver records another SHA-256 than the nodes' file has: as if a node held other bytes.
    monkeypatch.setattr(incdet.pipeline, "model_record", lambda path: {**recorded(path), "sha256": "0" * 64})
    code = main(_on_ray(cluster, "detect", "images", "--model", "model.pt", "--no-multibox", "--out", "refused.json"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith(f"incdet: error: {job / 'model.pt'}: on {socket.gethostname()} (Ray node ")
    assert f"has SHA-256 {file_sha256('model.pt')[:16]}..., the job recorded 0000000000000000..." in err
    assert not Path("refused.json").exists()


def test_model_files_are_sent_by_path_or_shipped_name_and_checked_where_loaded(tmp_path) -> None:
    shipped = ModelFile.of(DEMO_REGION_MODELS[0], file_sha256(DEMO_REGION_MODELS[0]))
    name = DEMO_REGION_MODELS[0].relative_to(WEIGHTS_DIR).as_posix()  # demo/members/NAME.pt: not this install's path
    assert (shipped.path, shipped.shipped) == (name, True)
    assert shipped.local("node-a") == DEMO_REGION_MODELS[0]
    copy = tmp_path / "model.pt"
    shutil.copy(DEMO_REGION_MODELS[0], copy)
    other = ModelFile.of(copy, file_sha256(copy))
    assert (other.path, other.shipped) == (str(copy), False)
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(InputError, match=rf"^{copy}: on node-a has SHA-256 \w{{16}}\.\.\., the job recorded"):
        other.local("node-a")
    copy.unlink()
    with pytest.raises(InputError, match=rf"^{copy}: cannot be read on node-a \(No such file or directory\)"):
        other.local("node-a")


def test_blocks_hold_a_few_groups_and_stay_bounded() -> None:
    assert _blocks(3, 2) == 3  # a small job: one group per block, every CPU busy
    assert _blocks(1_000, 4) == 250  # four groups per block
    assert _blocks(125_000, 64) == MAX_BLOCKS  # a million images in groups of 8
    assert _blocks(10, 100) == 10


def test_a_cpu_actor_fills_the_smallest_live_node_up_to_the_lanes_cap() -> None:
    def node(cpus: float, gib: float = 64, alive: bool = True) -> dict:
        return {"Alive": alive, "Resources": {"CPU": cpus, "memory": gib * SEARCH_MEMORY} if cpus else {"GPU": 1.0}}

    assert _actor_cpus([node(16), node(4), node(2, alive=False)]) == 4  # 4 actors on the 16-core node
    assert _actor_cpus([node(16, gib=6.5)]) == 6  # memory for 6 searches at once
    assert _actor_cpus([node(64), node(0)]) == MAX_LANES  # a GPU-only node has no CPUs to fill
    assert _actor_cpus([]) == 1
