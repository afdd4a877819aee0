"""Region-classifier factory and loading of torchvision ImageNet weights into it.

Every classifier takes a (B, 3, H, W) batch of ImageNet mean/std-normalised RGB (what
``torchvision.transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)`` gives for [0, 1] pixels),
internally maps it to [-1, 1] as torchvision's ``transform_input=True`` does for Google's
ported weights, and returns (B, num_classes) logits in eval mode.

Input sizes (square side in pixels):

=============  =======  ========  =======  ========
arch           default  low_res   minimum  minimum
                        default            low_res
=============  =======  ========  =======  ========
googlenet      224      56        32       8
inception_v3   299      79        75       21
=============  =======  ========  =======  ========
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from incdet.errors import InputError
from incdet.nets import ARCH_NAMES
from incdet.nets.googlenet import GoogLeNet
from incdet.nets.inception_v3 import InceptionV3

ARCHS: dict[str, type[GoogLeNet] | type[InceptionV3]] = dict(zip(ARCH_NAMES, (GoogLeNet, InceptionV3)))

# Dropout before the main classifier when none is given: GoogLeNet paper section 5 (40%);
# the Inception-v3 paper states none, so torchvision's 0.5.
_DEFAULT_DROPOUT = {"googlenet": 0.4, "inception_v3": 0.5}


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


def build_classifier(
    arch: str,
    num_classes: int,
    *,
    width: float = 1.0,
    low_res: bool = False,
    aux_logits: bool = False,
    dropout: float | None = None,
) -> nn.Module:
    """A freshly initialised Inception classifier.

    In training mode with ``aux_logits`` the model returns a NamedTuple
    (``GoogLeNetOutputs(logits, aux1, aux2)`` or ``InceptionV3Outputs(logits, aux)``),
    otherwise the logits tensor. ``width`` scales every filter bank (see ``scale_channels``).
    """
    _check_arch(arch)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    p = _DEFAULT_DROPOUT[arch] if dropout is None else dropout
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return ARCHS[arch](num_classes, width=width, low_res=low_res, aux_logits=aux_logits, dropout=p)


def default_input_size(arch: str, low_res: bool = False) -> int:
    """The input side the architecture was designed for (224/299; 56/79 with low_res reach the same final grids)."""
    _check_arch(arch)
    return ARCHS[arch].DEFAULT_INPUT_SIZE[low_res]


def min_input_size(arch: str, low_res: bool = False) -> int:
    """The smallest input side the classifier accepts (smaller raises ValueError)."""
    _check_arch(arch)
    return ARCHS[arch].MIN_INPUT_SIZE[low_res]


def check_network_fields(arch: str, classes: tuple[str, ...], input_size: int, width: float, low_res: bool) -> None:
    """What the spec of every network file must hold (a backbone's and a region classifier's alike):
    a known architecture, distinct non-empty class names, an input it accepts, a positive width.
    ValueError says which."""
    if arch not in ARCH_NAMES:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCH_NAMES)})")
    if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ValueError("classes must be a non-empty list of distinct class names")
    smallest = min_input_size(arch, low_res)
    if input_size < smallest:
        raise ValueError(f"input_size {input_size} is below the {smallest} px {arch} accepts")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")


class LoadedWeights(NamedTuple):
    """What ``load_backbone_weights`` left out: model keys kept at their initial values, file keys unused."""

    kept_initial: tuple[str, ...]
    ignored: tuple[str, ...]


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadedWeights:
    """Load a torchvision GoogLeNet / Inception3 state dict file (e.g. ImageNet weights) into ``model``.

    Fine-tuning on other classes keeps everything but the classifiers, so classifier layers
    (``fc`` and the side heads' last linear layers) whose shape differs keep their fresh
    initialisation. Side-head weights are optional both ways: a file without them leaves the
    model's heads initialised, and a model without heads ignores them (they are training-only).
    Anything else missing, extra or of another shape raises InputError naming the file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only's many-line advice would not help here
        if "Unsupported global" in str(exc):
            raise InputError(path, "holds pickled objects, not only tensors (a whole model?); save its state_dict() instead") from exc
        raise InputError(path, "is not a torch weight file (torch.load cannot unpickle it)") from exc
    except Exception as exc:  # torch raises many types (zip, OS, EOF) for unreadable files
        raise InputError(path, f"cannot read a torch weight file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(path, "is not a state dict (a mapping of parameter names to tensors)")

    own = model.state_dict()
    classifier = tuple(f"{layer}." for layer in getattr(model, "classifier_layers", ()))
    aux = tuple(getattr(model, "aux_prefixes", ()))
    usable, ignored, problems = {}, [], []
    for key, value in state.items():
        if key not in own and key.startswith(aux):
            ignored.append(key)
        elif key not in own:
            problems.append(f"unexpected key {key}")
        elif own[key].shape != value.shape:
            if key.startswith(classifier):
                ignored.append(key)
            else:
                problems.append(f"{key} has shape {tuple(value.shape)}, model expects {tuple(own[key].shape)}")
        else:
            usable[key] = value
    missing = [key for key in own if key not in state]
    problems += [f"missing key {key}" for key in missing if not key.startswith(aux)]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(path, f"does not match the {type(model).__name__} model: {'; '.join(problems[:3])}{more}")
    model.load_state_dict(usable, strict=False)
    kept = [key for key in own if key not in usable]
    return LoadedWeights(tuple(kept), tuple(ignored))
