"""Tiny region-training datasets for the tests: shapes on noise (VOC XML + PNG) and cheap stored
proposals (bench/train_scale.py's, stamped current so no selective search runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.io import write_image
from incdet.proposals.settings import SearchSettings

_BENCH = Path(__file__).resolve().parent.parent / "bench" / "train_scale.py"
_spec = importlib.util.spec_from_file_location("bench_train_scale", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

WIDTH, HEIGHT = 96, 72
CLASSES = ("square", "disc")


def write_shapes(folder: Path, count: int, seed: int) -> Path:
    """``count`` images with one yellow square or one cyan disc each (alternating); returns the annotation folder."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = cv2.resize(rng.integers(0, 90, (9, 12, 3)).astype(np.uint8), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        w, h = (int(v) for v in rng.integers(24, 40, 2))
        x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        if i % 2 == 0:
            image[y : y + h, x : x + w] = (230, 210, 40)
        else:
            cv2.ellipse(image, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (40, 210, 230), -1)
        write_image(folder / "images" / f"{i:03d}.png", image)
        box = np.array([[x, y, x + w, y + h]], np.float32)
        write_voc_xml(folder / "annotations" / f"{i:03d}.xml", Annotation(f"{i:03d}.png", WIDTH, HEIGHT, box, [CLASSES[i % 2]]))
    return folder / "annotations"


def make_data(root: Path, train: int = 8, val: int = 4) -> dict[str, Path]:
    """Train/val splits of :func:`write_shapes` with cheap proposals in ``root/<split>.db``."""
    paths = {}
    for split, count, seed in (("train", train, 0), ("val", val, 1)):
        annotations = write_shapes(root / split, count, seed)
        paths[split] = annotations
        paths[f"{split}_store"] = bench.write_cheap_proposals(root / f"{split}.db", annotations, SearchSettings(), per_image=60)
    return paths


def region_config(paths: dict[str, Path], out: Path, **overrides: Any) -> dict[str, Any]:
    """A config mapping for a few seconds of training of a GoogLeNet x0.125 on 32 px crops."""
    cfg = {
        "data": {"train": str(paths["train"]), "val": str(paths["val"]), "train_proposals": str(paths["train_store"]),
                 "val_proposals": str(paths["val_store"]), "images_per_batch": 2, "regions_per_image": 16, "num_workers": 0},
        "model": {"arch": "googlenet", "width": 0.125, "input_size": 32},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0, "ema_decay": None},
        "max_epochs": 1,
        "out_dir": str(out / "run"),
        "export": str(out / "model.pt"),
        "trainer": {"enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
