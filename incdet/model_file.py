"""Self-describing model files: weights plus the spec needed to rebuild and use them.

Region classifiers, backbones and MultiBox networks are all saved this way. Each kind has a
:class:`ModelSpec` subclass (its fields are what the file stores besides the weights) with its own
``FORMAT`` string, so loading the wrong kind of file, a plain state dict or a file with a missing
or absurd field is a one-line error naming the file, not a shape mismatch deep inside PyTorch.
This module is the only reader and writer of such files.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from incdet.errors import InputError
from incdet.io import atomic_path, file_sha256

S = TypeVar("S", bound="ModelSpec")


@dataclass(frozen=True)
class ModelSpec:
    """Base of every model file's spec. Subclasses are frozen dataclasses that set ``FORMAT`` (stored
    in the file) and ``WHAT`` (the kind of file, in messages), and implement :meth:`build`.

    Fields with defaults may be missing from a file, so files written before a field existed
    still load (with that default).
    """

    FORMAT: ClassVar[str]
    WHAT: ClassVar[str]

    metadata: dict[str, Any] = field(default_factory=dict, compare=False, kw_only=True)

    def build(self) -> nn.Module:
        raise NotImplementedError

    def validate(self) -> None:
        """Raise ValueError naming a field whose value no model can have (called on every load)."""

    def model_for(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """The module ``state`` is loaded into; kinds whose architecture lives partly in the weights
        (MultiBox priors) override this."""
        return self.build()

    def adapt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict as this version of the model names it (older files, training-only keys)."""
        return state

    def fields(self) -> dict[str, Any]:
        """The spec as plain Python values (tuples as lists), as stored in the file."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)}

    @classmethod
    def from_fields(cls: type[S], values: dict[str, Any], path: str | Path) -> S:
        """Rebuild a spec from stored values, coercing each to its field's type."""
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise InputError(path, f"{cls.WHAT} file has no {f.name!r} field")
                continue
            try:
                kwargs[f.name] = _coerce(hints[f.name], values[f.name])
            except (TypeError, ValueError):
                raise InputError(path, f"{cls.WHAT} file: field {f.name!r} has an unusable value {values[f.name]!r}") from None
        spec = cls(**kwargs)
        try:
            spec.validate()
        except ValueError as exc:
            raise InputError(path, f"{cls.WHAT} file: {exc}") from None
        return spec


def _coerce(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        return tuple(_coerce(args[0], v) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(value)
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and value != int(value)):
            raise TypeError(value)
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return value


def save_model(path: str | Path, spec: ModelSpec, model: nn.Module) -> None:
    """Write the spec and the model's state dict atomically, tagged with the spec's ``FORMAT``."""
    with atomic_path(path) as tmp:
        torch.save({"format": spec.FORMAT, **spec.fields(), "state_dict": model.state_dict()}, tmp)


def read_model_payload(path: str | Path, format: str, what: str) -> dict[str, Any]:
    """The raw payload of a file saved with ``format``; ``what`` names the kind of file in errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, OS, EOF) for files it cannot read
        raise InputError(path, f"not a readable torch file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != format:
        raise InputError(path, f"not an incdet {what} file (expected format {format!r})")
    if not isinstance(payload.get("state_dict"), dict):
        raise InputError(path, f"{what} file has no state_dict")
    return payload


def read_spec(path: str | Path, spec_type: type[S]) -> S:
    """The spec of a file written by :func:`save_model`, checked, without building its network: what
    a driver needs (classes, crop, settings) when its workers build the networks they run."""
    return spec_type.from_fields(read_model_payload(path, spec_type.FORMAT, spec_type.WHAT), path)


def load_model(path: str | Path, spec_type: type[S], device: torch.device | str = "cpu") -> tuple[S, nn.Module]:
    """The spec and the model of a file written by :func:`save_model`, in eval mode on ``device``."""
    payload = read_model_payload(path, spec_type.FORMAT, spec_type.WHAT)
    spec = spec_type.from_fields(payload, path)
    state = payload["state_dict"]
    try:
        model = spec.model_for(state)
        model.load_state_dict(spec.adapt_state(state))
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(path, f"{spec_type.WHAT} file: its state dict does not match its architecture ({str(exc).splitlines()[0]})") from None
    return spec, model.to(device).eval()


def model_record(path: str | Path) -> dict[str, str]:
    """A model file as a job's settings record it: its name and the SHA-256 of its bytes."""
    return {"file": Path(path).name, "sha256": file_sha256(path)}
