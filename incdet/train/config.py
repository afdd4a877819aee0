"""YAML training configs read into typed dataclasses, with errors that name the file and key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from incdet.errors import InputError

T = TypeVar("T")

# Trainer arguments incdet sets itself from the config; a ``trainer:`` entry may not repeat them.
MANAGED_TRAINER_KEYS = ("max_epochs", "default_root_dir", "logger", "callbacks", "gradient_clip_val", "deterministic", "plugins")


def require_positive(values: dict[str, float]) -> None:
    """Raise ValueError naming the first config key whose value is below 1."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass
class RunConfig:
    """The keys every training config (regions, MultiBox, backbone) shares, which
    :func:`incdet.train.run_dir.make_trainer` reads."""

    trainer: dict[str, Any] = field(default_factory=dict)  # passed to lightning.Trainer: devices, strategy, precision...
    resume: bool | str | None = None  # true: out_dir/checkpoints/last.ckpt; or a Lightning checkpoint path
    # Reproducible algorithms only (torch.use_deterministic_algorithms): same seed, same weights, on the
    # same hardware, at the cost of slower kernels (and an error where an op has no deterministic one).
    deterministic: bool = False
    checkpoint_every_n_steps: int | None = None  # last.ckpt within epochs; null: every 10 minutes of training


def check_run(cfg: RunConfig) -> None:
    """The keys every training config shares (see :func:`incdet.train.run_dir.make_trainer`)."""
    if cfg.checkpoint_every_n_steps is not None and cfg.checkpoint_every_n_steps < 1:
        raise ValueError(f"checkpoint_every_n_steps must be >= 1 (or null: every 10 minutes), got {cfg.checkpoint_every_n_steps}")
    check_trainer_passthrough(cfg.trainer)


def check_trainer_passthrough(trainer: dict[str, Any]) -> None:
    """The ``trainer:`` mapping goes to ``lightning.Trainer`` (devices, strategy, precision...):
    its keys must be Trainer arguments that incdet does not set itself."""
    import inspect

    import lightning

    managed = sorted(set(trainer) & set(MANAGED_TRAINER_KEYS))
    if managed:
        raise ValueError(f"trainer.{managed[0]} is set by incdet from the rest of the config; remove it from trainer")
    unknown = sorted(set(trainer) - set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"})
    if unknown:
        raise ValueError(f"trainer.{unknown[0]} is not an argument of lightning.Trainer")


def load_config(path: str | Path, schema: type[T]) -> T:
    """Read ``path`` into the dataclass ``schema``; unknown keys and wrong types are errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML ({str(exc).splitlines()[0]})") from None
    return config_from(schema, data, path)


def config_from(schema: type[T], data: Any, path: str | Path, where: str = "") -> T:
    """``data`` (a mapping read from the YAML file ``path``, found there under ``where``, e.g.
    ``members[0].``) as the dataclass ``schema``, validated; errors name the file and the key."""
    path = Path(path)
    config = _build(schema, data, path, where)
    check = getattr(config, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise InputError(path, f"{where}{exc}") from None
    return config


def _build(cls: type, data: Any, path: Path, where: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(path, f"{where.rstrip('.') or 'top level'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(path, f"unknown key {where}{unknown[0]} (known here: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, path, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:  # a schema that checks its values on construction (e.g. SearchSettings)
        raise InputError(path, f"{where.rstrip('.') or 'top level'}: {exc}") from None


def _coerce(hint: Any, value: Any, path: Path, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, where + ".")
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(value):  # YAML's .nan: no setting means "not a number"
                raise InputError(path, f"{where}: expected a number, got .nan")
            return float(value)
        if option in (int, str, bool) and type(value) is option:
            return value
        if typing.get_origin(option) is list and isinstance(value, list):
            return list(value)
        if typing.get_origin(option) is dict and isinstance(value, dict):
            return dict(value)
        if option is Any:
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise InputError(path, f"{where}: expected {expected}, got {value!r}")
