"""Reading images and writing output files without ever leaving a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from incdet.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The rename is atomic on POSIX, so a crash or Ctrl-C never leaves a truncated output
    and never destroys the user's previous file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1) + "\n")


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image; the format follows the suffix of ``path``."""
    ok, buf = cv2.imencode(Path(path).suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(path, "could not encode image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def read_image(path: str | Path) -> np.ndarray:
    """Read any common image file as an HxWx3 RGB uint8 array.

    Grayscale is replicated to three channels, alpha is dropped and 16-bit images are
    scaled to 8 bits, because every later stage expects 8-bit RGB.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(path, "not a readable image (unknown format or corrupt file)")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise InputError(path, f"unsupported channel count {image.shape[2]}")
    return np.ascontiguousarray(image)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a directory")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return images


def collect_images(items: list[str | Path]) -> list[Path]:
    """Image files named directly or found in named folders, in order, each once.

    Results (proposal files, detections, drawings) are keyed by file name, so two different
    images with the same name are refused rather than silently overwriting each other.
    """
    paths = [p for item in items for p in (list_images(item) if Path(item).is_dir() else [Path(item)])]
    seen: dict[str, Path] = {}
    for path in paths:
        if path.name in seen and seen[path.name] != path:
            raise InputError(path, f"same file name as {seen[path.name]}; results are keyed by file name")
        seen[path.name] = path
    return list(dict.fromkeys(paths))
