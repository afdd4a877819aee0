"""bench/detect.py's own code paths, run small on the CPU: the naive per-crop loop (device-correct, and
in agreement with the batched warp), and the throughput measurement of the models detection runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.classify.ensemble import Ensemble
from incdet.io import write_image
from incdet.nets.complexity import count_macs
from incdet.proposals.selective_search import search_proposals
from incdet.proposals.selective_search import selective_search
from incdet.proposals.settings import SearchSettings
from incdet.transforms import image_to_tensor

BENCH = Path(__file__).resolve().parent.parent / "bench" / "detect.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_detect", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_naive_loop_runs_on_the_models_device_and_agrees_with_the_batched_warp(bench) -> None:
    spec = RegionClassifierSpec("googlenet", ("a", "b", "c"), 32, 2, 0.125)
    torch.manual_seed(0)
    model = spec.build().eval()
    image = skimage.data.chelsea()[::2, ::2].copy()
    boxes = selective_search(image)[:40]
    naive = bench.naive_scores(image, boxes, model, spec.input_size, spec.context_pad, "cpu")
    batched = Ensemble([spec], [model])([image_to_tensor(image)], [torch.from_numpy(boxes)])[0].probs
    assert naive.shape == batched.shape == (40, 4)
    # Integer crops + cv2.resize against roi_align's bilinear samples: close, not equal.
    assert (naive.argmax(1) == batched.argmax(1)).float().mean() >= 0.9
    assert torch.allclose(naive, batched, atol=0.05)
    # On another device every crop must follow the model there (on "meta" a CPU crop fails at once).
    meta = spec.build().eval().to("meta")
    assert bench.naive_scores(image, boxes[:2], meta, spec.input_size, spec.context_pad, "meta").device.type == "meta"


def test_the_throughput_section_counts_crops_and_flops(bench, tmp_path: Path) -> None:
    """It times the models given, as detection runs them (gpu_check's measurement), on real proposals."""
    specs = [RegionClassifierSpec("googlenet", ("a", "b", "c"), 64, 5, 0.125),
             RegionClassifierSpec("inception_v3", ("a", "b", "c"), 75, 5, 0.125, bbox_reg=True)]
    models = []
    for i, spec in enumerate(specs):
        models.append(tmp_path / f"m{i}.pt")
        save_region_classifier(models[-1], spec, spec.build())
    image = skimage.data.chelsea()[::2, ::2].copy()
    write_image(tmp_path / "images" / "cat.png", image)
    result = bench.bench_throughput([tmp_path / "images" / "cat.png"], models, torch.device("cpu"), "fp32", repeats=2)
    flops_per_proposal = sum(2 * count_macs(spec.build(), spec.input_size) for spec in specs)
    assert np.isclose(result["flops_per_crop"], flops_per_proposal / 2)  # a crop per member and proposal
    assert np.isclose(result["flop_per_s"], result["crops_per_s"] * result["flops_per_crop"])
    assert np.isclose(result["crops_per_s"], 2 * result["images_per_s"] * len(search_proposals(image, SearchSettings())))
    assert result["peak_flop_per_s"] is None and result["share_of_peak"] is None  # no bf16 peak for a CPU
