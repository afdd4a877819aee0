"""Region classifiers as ONNX, for deployment outside Python (onnxruntime, TensorRT, OpenVINO ...).

The graph takes a (N, 3, S, S) batch of warped, ImageNet mean/std-normalised crops (N free) and
returns ``probs`` (N, C + 1), the softmax over background + classes, and, for a classifier with a
box regressor, ``deltas`` (N, 4 * (C + 1)) in ``incdet.boxes.encode_deltas`` units. Everything a
deployer needs to prepare the crops and read the outputs (class list, crop size, context padding,
normalisation, regression weights) is stored in the file's metadata as JSON under ``incdet``.
Exported with torch's ``torch.export``-based exporter (the default since torch 2.9; it needs the
``onnxscript`` package).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from incdet.boxes import REGRESSION_WEIGHTS
from incdet.classify.classifier_file import RegionClassifierSpec
from incdet.classify.model import RegionClassifier
from incdet.io import atomic_path
from incdet.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)
OPSET = 18


class _Deployable(nn.Module):
    """The region classifier with softmax applied, returning plain tensors (ONNX has no NamedTuple)."""

    def __init__(self, model: RegionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, crops: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        out = self.model(crops)
        probs = out.logits.softmax(dim=1)
        return probs if out.deltas is None else (probs, out.deltas)


def onnx_metadata(spec: RegionClassifierSpec) -> dict:
    """What a deployer needs besides the graph: how to make the crops and what the outputs mean."""
    return {
        "format": spec.FORMAT, "arch": spec.arch, "classes": ["__background__", *spec.classes],
        "input_size": spec.input_size, "context_pad": spec.context_pad,
        "input": "RGB crops warped with context padding, x / 255 normalised with mean and std",
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "bbox_reg": spec.bbox_reg, "regression_weights": list(REGRESSION_WEIGHTS),
    }


def export_onnx(spec: RegionClassifierSpec, model: RegionClassifier, path: str | Path, batch: int = 2) -> Path:
    """Write ``model`` as ONNX at ``path`` (atomically) with a dynamic batch axis."""
    import onnx  # here: onnx takes 0.6 s to import, which every detection process would pay for a cached graph

    deployable = _Deployable(model.cpu().eval()).eval()
    example = torch.zeros(batch, 3, spec.input_size, spec.input_size)
    outputs = ["probs", "deltas"] if spec.bbox_reg else ["probs"]
    regions = torch.export.Dim("regions", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        program = torch.onnx.export(deployable, (example,), dynamo=True, input_names=["crops"], output_names=outputs,
                                    dynamic_shapes=({0: regions},), opset_version=OPSET, verbose=False)
    proto = program.model_proto
    proto.metadata_props.add(key="incdet", value=json.dumps(onnx_metadata(spec)))
    onnx.checker.check_model(proto)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    log.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path
