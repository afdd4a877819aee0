"""``incdet export``: the region classifier (and its box regressor) as ONNX gives onnxruntime the same
outputs as PyTorch on real demo crops, for any batch size; bad input is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from incdet.classify.classifier_file import (
    RegionClassifierSpec,
    load_region_classifier,
    save_region_classifier,
)
from incdet.cli import main
from incdet.data.demo import generate_demo
from incdet.io import read_image
from incdet.regions.warp import warp_image_regions
from incdet.transforms import image_to_tensor
from incdet.weights import DEMO_REGION_MODELS


@pytest.fixture(scope="module")
def demo_crops(tmp_path_factory) -> dict[int, torch.Tensor]:
    """Warped crops of a demo test image's ground-truth objects and of random boxes, per crop size."""
    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, seed=0, counts={"train": 1, "val": 1, "test": 2})
    image = image_to_tensor(read_image(sorted((root / "test" / "images").iterdir())[0]))
    rng = np.random.default_rng(0)
    xy = rng.random((13, 2)) * 150
    boxes = torch.tensor(np.concatenate([xy, xy + 20 + rng.random((13, 2)) * 90], 1), dtype=torch.float32)
    return {size: warp_image_regions(image, boxes, size, pad) for size, pad in ((64, 5), (72, 5), (80, 8), (32, 2))}


def _run(path, crops: torch.Tensor) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"crops": crops.numpy()})


@pytest.mark.parametrize("member", range(len(DEMO_REGION_MODELS)))
def test_shipped_classifiers_export_and_match_pytorch(tmp_path, demo_crops, capsys, member) -> None:
    path = DEMO_REGION_MODELS[member]
    out = tmp_path / "demo.onnx"
    assert main(["export", "--model", str(path), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    spec, model = load_region_classifier(path)
    assert spec.bbox_reg  # every shipped member regresses boxes: the file holds both heads
    crops = demo_crops[spec.input_size]
    with torch.no_grad():
        expected = model(crops)
    for batch in (crops, crops[:1]):  # the batch axis is dynamic
        probs, deltas = _run(out, batch)
        np.testing.assert_allclose(probs, expected.logits.softmax(1).numpy()[: len(batch)], atol=1e-4)
        np.testing.assert_allclose(deltas, expected.deltas.numpy()[: len(batch)], atol=1e-4)
    metadata = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["incdet"])
    assert metadata["classes"] == ["__background__", *spec.classes] and metadata["input_size"] == spec.input_size


def test_a_classifier_with_a_regressor_exports_both_heads(tmp_path, demo_crops) -> None:
    spec = RegionClassifierSpec(arch="googlenet", classes=("a", "b"), input_size=32, context_pad=2, width=0.125, bbox_reg=True)
    torch.manual_seed(0)
    model = spec.build().eval()
    torch.nn.init.normal_(model.bbox_pred.bias, std=0.5)  # visible deltas, not the near-zero start
    save_region_classifier(tmp_path / "reg.pt", spec, model)
    assert main(["export", "--model", str(tmp_path / "reg.pt"), "--out", str(tmp_path / "reg.onnx")]) == 0
    crops = demo_crops[32]
    probs, deltas = _run(tmp_path / "reg.onnx", crops)
    with torch.no_grad():
        out = model(crops)
    np.testing.assert_allclose(probs, out.logits.softmax(1).numpy(), atol=1e-4)
    np.testing.assert_allclose(deltas, out.deltas.numpy(), atol=1e-4)
    assert deltas.shape == (len(crops), 12) and np.abs(deltas).max() > 0.01


@pytest.mark.parametrize("problem", ["corrupt", "missing", "suffix", "out_is_dir"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, problem, capsys) -> None:
    model, out = tmp_path / "m.pt", tmp_path / "m.onnx"
    model.write_bytes(DEMO_REGION_MODELS[0].read_bytes()[:5000])  # truncated
    if problem == "missing":
        model = tmp_path / "nope.pt"
    elif problem == "suffix":
        out = tmp_path / "m.txt"
    elif problem == "out_is_dir":
        model.write_bytes(DEMO_REGION_MODELS[0].read_bytes())
        out.mkdir()
    assert main(["export", "--model", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("incdet: error: ") and "\n" not in err
    assert {"corrupt": "m.pt: not a readable torch file", "missing": "nope.pt: region-classifier file does not exist",
            "suffix": "must end in .onnx", "out_is_dir": "m.onnx: is a directory"}[problem] in err
    assert problem == "out_is_dir" or not out.exists()
