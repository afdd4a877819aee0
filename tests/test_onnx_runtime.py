"""``--runtime``: the ensemble run by onnxruntime gives torch's scores and boxes, the runtime is chosen
where it runs (onnxruntime for fp32 on the CPU), and its cache of exported graphs is used once made,
refused with one line when damaged, and does without a folder it cannot write."""

from __future__ import annotations

import logging

import pytest
import torch

from incdet.classify import onnx_runtime
from incdet.classify.ensemble import load_ensemble
from incdet.classify.onnx_runtime import resolve_runtime
from incdet.errors import InputError
from incdet.io import list_images, read_image
from incdet.pipeline import Pipeline
from incdet.transforms import image_to_tensor
from incdet.weights import DEMO_REGION_MODELS


@pytest.fixture(scope="module")
def demo_regions(tmp_path_factory):
    from incdet.data.demo import generate_demo

    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, seed=0, counts={"train": 1, "val": 1, "test": 2})
    images = [read_image(path) for path in list_images(root / "test" / "images")]
    pipeline = Pipeline(multibox=None, device="cpu", runtime="torch")
    return images, pipeline.propose(images)


def test_onnxruntime_scores_and_boxes_equal_torch(demo_regions) -> None:
    images, proposals = demo_regions
    tensors, boxes = [image_to_tensor(image) for image in images], [p.boxes for p in proposals]
    on_torch = load_ensemble(DEMO_REGION_MODELS, runtime="torch")
    on_onnx = load_ensemble(DEMO_REGION_MODELS, runtime="onnxruntime")
    assert on_onnx.sessions is not None and len(on_onnx.sessions) == 3
    for a, b in zip(on_torch(tensors, boxes), on_onnx(tensors, boxes)):
        torch.testing.assert_close(b.probs, a.probs, atol=1e-5, rtol=0)  # measured: 3e-7
        torch.testing.assert_close(b.boxes, a.boxes, atol=1e-3, rtol=0)  # pixels
        assert b.probs.dtype == torch.float32 and (b.probs.argmax(1) == a.probs.argmax(1)).float().mean() > 0.999


def test_lanes_give_the_same_bits_however_many_there_are(demo_regions) -> None:
    """Each batch runs on whichever lane is free; the sums are made in the batches' order, so 1, 2 or 5
    lanes write the same results (what keeps resumed and sharded jobs byte-identical)."""
    images, proposals = demo_regions
    tensors, boxes = [image_to_tensor(image) for image in images], [p.boxes for p in proposals]
    ensemble = load_ensemble(DEMO_REGION_MODELS, runtime="onnxruntime")
    ensemble.batch_size = 32  # many batches per member, so that lanes finish out of order
    results = {}
    for lanes in (1, 2, 5):
        ensemble.lanes = lanes
        results[lanes] = ensemble(tensors, boxes)
    for lanes in (2, 5):
        for a, b in zip(results[1], results[lanes]):
            assert torch.equal(a.probs, b.probs) and torch.equal(a.boxes, b.boxes)


def test_lanes_follow_the_threads_up_to_a_cap_and_then_sessions_get_several(demo_regions) -> None:
    """A lane holds a batch's activations, so a machine of many cores gets MAX_LANES lanes of several
    threads each rather than one lane per core; the results stay the same bits."""
    from incdet.classify.ensemble import MAX_LANES

    images, proposals = demo_regions
    tensors, boxes = [image_to_tensor(image) for image in images], [p.boxes for p in proposals]
    before = torch.get_num_threads()
    built = {}
    try:
        for threads in (1, 2, 4 * MAX_LANES):
            torch.set_num_threads(threads)
            built[threads] = load_ensemble(DEMO_REGION_MODELS[:1], runtime="onnxruntime")
    finally:
        torch.set_num_threads(before)
    assert [(e.lanes, e.sessions[0].session.get_session_options().intra_op_num_threads) for e in built.values()] == [
        (2, 1), (2, 1), (MAX_LANES, 4)]
    small, large = built[1](tensors, boxes), built[4 * MAX_LANES](tensors, boxes)
    assert all(torch.equal(a.probs, b.probs) and torch.equal(a.boxes, b.boxes) for a, b in zip(small, large))


def test_in_order_yields_in_order_with_every_lane_busy_and_no_more() -> None:
    import random
    import threading
    import time

    from incdet.classify.ensemble import in_order

    lock, running, most = threading.Lock(), [0], [0]
    delays = random.Random(0).choices([0.0, 0.002, 0.01], k=40)

    def slow_square(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(delays[i])
        with lock:
            running[0] -= 1
        return i * i

    consumed = []
    for value in in_order(slow_square, range(40), lanes=3):
        consumed.append(value)
        time.sleep(0.001)  # the caller's own work meanwhile
    assert consumed == [i * i for i in range(40)]
    assert most[0] == 3  # every lane busy, never more


def test_the_runtime_is_chosen_where_it_runs() -> None:
    cpu = torch.device("cpu")
    assert resolve_runtime("auto", cpu, "fp32") == "onnxruntime"
    assert resolve_runtime("auto", cpu, "bf16") == "torch"  # onnxruntime's graphs are fp32
    assert resolve_runtime("auto", torch.device("cuda"), "fp32") == "torch"
    assert resolve_runtime("torch", cpu, "fp32") == "torch"
    with pytest.raises(InputError, match="runtime onnxruntime runs fp32 on the CPU; this job is bf16"):
        resolve_runtime("onnxruntime", cpu, "bf16")
    with pytest.raises(InputError, match="runtime 'tensorrt' is not one of"):
        resolve_runtime("tensorrt", cpu, "fp32")
    assert Pipeline(multibox=None, device="cpu").settings()["runtime"] == "auto"  # recorded as asked, as precision


def test_the_graphs_are_exported_once_into_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INCDET_CACHE", str(tmp_path))
    load_ensemble(DEMO_REGION_MODELS[:1], runtime="onnxruntime")
    graph, = (tmp_path / "onnx").iterdir()
    made = graph.stat().st_mtime_ns
    load_ensemble(DEMO_REGION_MODELS[:1], runtime="onnxruntime")
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [graph.name] and graph.stat().st_mtime_ns == made
    graph.write_bytes(b"not an onnx graph")
    with pytest.raises(InputError, match=f"{graph}: cannot be loaded by onnxruntime .*; delete it to export it again"):
        load_ensemble(DEMO_REGION_MODELS[:1], runtime="onnxruntime")


def test_a_cache_it_cannot_write_costs_an_export_and_a_warning(tmp_path, monkeypatch, caplog, demo_regions) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("INCDET_CACHE", str(blocked))
    with caplog.at_level(logging.WARNING, logger=onnx_runtime.__name__):
        ensemble = load_ensemble(DEMO_REGION_MODELS[:1], runtime="onnxruntime")
    assert "cannot use the ONNX cache" in caplog.text and "set INCDET_CACHE to a writable folder" in caplog.text
    images, proposals = demo_regions
    assert ensemble([image_to_tensor(images[0])], [proposals[0].boxes])[0].probs.shape[1] == 6
