"""Starting a region classifier from a pretrained classification backbone, as R-CNN does.

R-CNN's recipe is: pretrain the network on image classification, replace its classifier by one
with C + 1 outputs (the classes and background) and fine-tune on warped regions, at a lower
learning rate, optionally keeping the first layers fixed. ``model.init`` takes either file a user
is likely to have: the backbone file ``incdet train backbone`` exports, or a torchvision-format
``googlenet`` / ``inception_v3`` state dict (e.g. ImageNet weights downloaded once). A file of
another architecture, width or stem is refused, naming the file.
"""

from __future__ import annotations

import functools
import logging
import pickle
from pathlib import Path
from typing import NamedTuple

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from incdet.errors import InputError
from incdet.nets.backbone_file import BackboneSpec, load_backbone
from incdet.nets.factory import ARCHS, load_backbone_weights

log = logging.getLogger(__name__)

CLASSIFIER = "fc"


@functools.cache
def trunk_layers(arch: str) -> tuple[str, ...]:
    """The top-level layers of ``arch`` that hold weights, in order, without the classifier: the
    names ``model.freeze_until`` accepts (they do not depend on the width)."""
    net = ARCHS[arch](2, width=0.125)
    return tuple(name for name, layer in net.named_children() if name != CLASSIFIER and next(layer.parameters(), None) is not None)


class InitReport(NamedTuple):
    """Top-level layers of the network whose weights came from the file, and those left freshly
    initialised (the C + 1 classifier, and the box regressor when there is one)."""

    loaded: tuple[str, ...]
    new: tuple[str, ...]


def _torch_payload(path: Path) -> object:
    if not path.is_file():
        raise InputError(path, "model.init: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(path, "model.init: holds pickled objects, not a backbone file or a state dict") from None
    except Exception as exc:  # torch raises many types (zip, OS, EOF) for unreadable files
        raise InputError(path, f"model.init: not a readable torch file ({type(exc).__name__})") from None


def _load_backbone_file(net: nn.Module, path: Path, arch: str, width: float, low_res: bool) -> set[str]:
    spec, backbone = load_backbone(path)
    if (spec.arch, spec.width, spec.low_res) != (arch, width, low_res):
        stem = lambda lr: ", low-res stem" if lr else ""  # noqa: E731
        raise InputError(path, f"is a {spec.arch} backbone at width {spec.width:g}{stem(spec.low_res)}; "
                               f"the config's model is {arch} at width {width:g}{stem(low_res)}")
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith(CLASSIFIER + ".")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(CLASSIFIER + ".") for k in missing):
        raise InputError(path, f"backbone file does not fit the {arch} network ({(unexpected or missing)[0]})")
    return set(state)


def initialise_from(model: nn.Module, path: str | Path, arch: str, width: float, low_res: bool) -> InitReport:
    """Load the trunk of ``model`` (a :class:`incdet.classify.model.RegionClassifier`) from ``path``;
    its classifier always keeps its fresh C + 1 initialisation, whatever the file's class count."""
    path = Path(path)
    payload = _torch_payload(path)
    net = model.net
    fresh_classifier = {k: v.clone() for k, v in getattr(net, CLASSIFIER).state_dict().items()}
    if isinstance(payload, dict) and "format" in payload:
        if payload["format"] != BackboneSpec.FORMAT:
            raise InputError(path, f"model.init: a {payload['format']!r} file, not a backbone file (incdet train backbone) "
                                   "or a torchvision state dict")
        loaded = _load_backbone_file(net, path, arch, width, low_res)
    else:
        kept = set(load_backbone_weights(net, path).kept_initial)
        loaded = {k for k in net.state_dict() if k not in kept and not k.startswith(CLASSIFIER + ".")}
    getattr(net, CLASSIFIER).load_state_dict(fresh_classifier)
    layers = [name for name, layer in net.named_children() if any(f"{name}.{k}" in loaded for k in layer.state_dict())]
    new = ("net.fc",) + (("bbox_pred",) if getattr(model, "bbox_pred", None) is not None else ())
    rank_zero_only(log.info)("%s: loaded %d tensors into %s (%s); newly initialised: %s", path, len(loaded), arch, ", ".join(layers), ", ".join(new))
    return InitReport(tuple(layers), new)


def freeze_until(net: nn.Module, arch: str, last: str) -> list[nn.Module]:
    """Fix the weights of every top-level layer of ``net`` up to and including ``last``; returns the
    frozen layers, which training must also keep in eval mode (their batch-norm statistics fixed)."""
    frozen = []
    for name in trunk_layers(arch):
        layer = getattr(net, name)
        layer.requires_grad_(False)
        frozen.append(layer)
        if name == last:
            return frozen
    raise ValueError(f"no layer {last!r}")
