"""Choosing the torch device from a user's ``--device`` / ``device:`` setting."""

from __future__ import annotations

import torch

from incdet.errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU; anything else must be a torch
    device that exists here (``cpu``, ``cuda``, ``cuda:1`` ...), else a one-line InputError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(None, f"device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"device {name!r} asked for, but this machine has no usable CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(None, f"device {name!r} asked for, but there are only {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise InputError(None, f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device
