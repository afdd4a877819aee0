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


# Detection's floating-point precisions: the name a user gives, and the dtype autocast computes in.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 on a CUDA GPU that computes it natively (Ampere and later), else fp32: on the CPU
    bf16 autocast costs more than it saves unless the processor has bf16 instructions. Any other name
    must be one of :data:`PRECISIONS`, else a one-line InputError."""
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if name not in PRECISIONS:
        raise InputError(None, f"precision {name!r} is not one of auto, {', '.join(PRECISIONS)}")
    return name


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a resolved ``precision`` on ``device`` (disabled for fp32)."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")
