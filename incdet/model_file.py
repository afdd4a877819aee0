"""Self-describing model files: weights plus the fields needed to rebuild and use them.

Region classifiers, backbones and MultiBox networks are all saved this way, each under its
own ``format`` string, so that loading the wrong kind of file (or a plain state dict) is a
clear error naming the file instead of a shape mismatch deep inside PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from incdet.errors import InputError
from incdet.io import atomic_path


def save_model_file(path: str | Path, format: str, fields: dict[str, Any], model: nn.Module) -> None:
    """Write ``fields`` and the model's state dict atomically, tagged with ``format``."""
    with atomic_path(path) as tmp:
        torch.save({"format": format, **fields, "state_dict": model.state_dict()}, tmp)


def read_model_file(path: str | Path, format: str, what: str) -> dict[str, Any]:
    """The payload of a file saved with ``format``; ``what`` names the kind of file in errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, OS, EOF) for files it cannot read
        raise InputError(path, f"not a readable torch file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != format:
        raise InputError(path, f"not an incdet {what} file (expected format {format!r})")
    return payload
