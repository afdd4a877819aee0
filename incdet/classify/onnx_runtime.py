"""Region classifiers run by onnxruntime: the CPU runtime of ``incdet detect`` (``--runtime``).

Why: on the CPU, torch eager reaches about a fifth of the fp32 matmul peak on these networks of many
small convolutions; onnxruntime runs the same graph (that of ``incdet export``) with fused kernels
faster (``python bench/ensemble.py --runtimes torch onnxruntime`` compares them), with scores equal
to torch's within 1e-6 and bitwise the same for any thread count, so resumed and sharded jobs stay
byte-identical.
On a GPU torch stays: its bf16 kernels are the fast path there.

Exporting takes seconds per network, so each graph is made once and kept in a cache folder
(``$INCDET_CACHE``, else ``~/.cache/incdet``), named by a digest of the network's weights and
description and of the exporter's version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from incdet.classify.classifier_file import RegionClassifierSpec
from incdet.classify.export import OPSET, export_onnx
from incdet.errors import InputError

log = logging.getLogger(__name__)
RUNTIMES = ("auto", "torch", "onnxruntime")


def resolve_runtime(name: str, device: torch.device, precision: str) -> str:
    """``auto`` is onnxruntime for fp32 on the CPU, torch otherwise; onnxruntime asked for where it
    cannot run (a GPU, bf16/fp16) is a one-line InputError."""
    if name not in RUNTIMES:
        raise InputError(None, f"runtime {name!r} is not one of {', '.join(RUNTIMES)}")
    fits = device.type == "cpu" and precision == "fp32"
    if name == "auto":
        return "onnxruntime" if fits else "torch"
    if name == "onnxruntime" and not fits:
        raise InputError(None, f"runtime onnxruntime runs fp32 on the CPU; this job is {precision} on {device} (use --runtime torch)")
    return name


def cache_folder() -> Path:
    return Path(os.environ.get("INCDET_CACHE") or Path.home() / ".cache" / "incdet")


def _fingerprint(spec: RegionClassifierSpec, model: nn.Module) -> str:
    """What the graph depends on: the weights, the description, torch (the exporter) and the opset."""
    digest = hashlib.sha256(json.dumps([asdict(spec), torch.__version__, OPSET], default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _graph(spec: RegionClassifierSpec, model: nn.Module) -> tuple[Path, bytes]:
    """The network's ONNX file in the cache and its bytes, exported first if it is not there yet. A
    cache this user cannot write (a read-only home on a cluster node) costs an export per run, with
    a warning, and stops nothing."""
    path = cache_folder() / "onnx" / f"{spec.arch}-{_fingerprint(spec, model)}.onnx"
    try:
        if not path.is_file():
            log.info("exporting the %s region classifier to %s for onnxruntime (once per network)", spec.arch, path)
            export_onnx(spec, model, path)
        return path, path.read_bytes()
    except OSError as exc:
        log.warning("cannot use the ONNX cache %s (%s); exporting for this run only (set INCDET_CACHE to a writable folder)",
                    path.parent, exc.strerror or exc)
    with tempfile.TemporaryDirectory(prefix="incdet-onnx-") as folder:
        return path, export_onnx(spec, model, Path(folder) / path.name).read_bytes()


class OnnxMember:
    """One region classifier as an onnxruntime session of ``threads`` threads: ``(B, 3, S, S)`` crops ->
    ``(probs, deltas)`` as :class:`incdet.classify.ensemble.Ensemble` adds them (probabilities, and
    encoded box deltas or None for a classifier without a regressor), float32 on the CPU. Several
    threads may call it at once (onnxruntime's ``run`` is thread-safe)."""

    def __init__(self, spec: RegionClassifierSpec, model: nn.Module, threads: int = 1) -> None:
        import onnxruntime

        path, graph = _graph(spec, model)
        options = onnxruntime.SessionOptions()
        # Few threads: the ensemble runs a session on several lanes at once (incdet.classify.ensemble.in_order).
        options.intra_op_num_threads = threads
        # Idle threads (of a session with several) sleep instead of spinning: the CPU they leave runs the search workers.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
            raise InputError(path, f"cannot be loaded by onnxruntime ({exc}); delete it to export it again") from None
        self.regresses = len(self.session.get_outputs()) > 1

    def __call__(self, crops: Tensor) -> tuple[Tensor, Tensor | None]:
        outputs = self.session.run(None, {"crops": np.ascontiguousarray(crops.numpy())})
        return torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1]) if self.regresses else None
