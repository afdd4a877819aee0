"""Builders of the bad-input corpus of tests/test_bad_input*.py: images of every odd kind beside good
ones, broken model files, and helpers that run the CLI and keep what it printed: in this process, or
without root's rights (as ``nobody`` when the tests run as root)."""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from incdet.cli import main

SIZE = (128, 96)  # width, height of every image the corpus detects in: small keeps the runs to seconds


def photo(name: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A real photograph from scikit-image as RGB uint8 of ``size`` (width, height)."""
    image = getattr(skimage.data, name)()
    image = np.dstack([image] * 3) if image.ndim == 2 else image[..., :3]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (OpenCV refuses to allocate them)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def sideways_jpeg(path: Path, upright: np.ndarray) -> None:
    """``upright`` stored rotated 90 degrees, with the EXIF tag (orientation 6) that turns it back."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # counter-clockwise; 6 = turn clockwise to view
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)


# name in the folder -> None for an image that must be detected, else the words its skip message must hold
IMAGES: dict[str, str | None] = {
    "good0.jpg": None, "good1.png": None, "good2.jpg": None,
    "cmyk.jpg": None, "deep16.png": None, "palette.png": None, "alpha.png": None, "sideways.jpg": None,
    "page.tif": None, "photo.webp": None, "anim.gif": None, "ünïcødé 写真.png": None, "sub.jpg/inner.png": None,
    "truncated.jpg": "not a readable image", "zero.png": "empty file", "text.jpg": "not a readable image",
    "one.png": "image is 1x1 px, smaller than the 20 px minimum region size",
    "thin.png": "image is 5x5000 px, smaller than the 20 px minimum region size",
    "huge_header.png": "larger than the 2^30 pixels OpenCV decodes", "pipe.jpg": "is not a regular file",
    "dangling.jpg": "no such file",
}


def write_images(folder: Path) -> Path:
    """Every entry of :data:`IMAGES` under ``folder``: three good photos, odd but good formats, and bad files."""
    folder.mkdir(parents=True)
    good = {"good0.jpg": "chelsea", "good1.png": "coffee", "good2.jpg": "astronaut"}
    for name, source in good.items():
        Image.fromarray(photo(source)).save(folder / name)
    rocket = Image.fromarray(photo("rocket"))
    rocket.convert("CMYK").save(folder / "cmyk.jpg")
    rocket.convert("I;16").save(folder / "deep16.png")
    rocket.convert("P").save(folder / "palette.png")
    rocket.convert("RGBA").save(folder / "alpha.png")
    for name in ("page.tif", "photo.webp", "anim.gif", "ünïcødé 写真.png"):
        rocket.save(folder / name)
    sideways_jpeg(folder / "sideways.jpg", photo("coffee"))
    (folder / "sub.jpg").mkdir()  # a folder named like an image: searched like any folder
    rocket.save(folder / "sub.jpg" / "inner.png")
    (folder / "truncated.jpg").write_bytes((folder / "good0.jpg").read_bytes()[:400])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("these are notes, not a JPEG\n")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "one.png")
    Image.fromarray(np.full((5000, 5, 3), 80, np.uint8)).save(folder / "thin.png")
    (folder / "huge_header.png").write_bytes(png_claiming(50000, 50000))
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "deleted.jpg")
    return folder


@dataclass
class Run:
    """What one ``incdet`` command returned and printed."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def error_line(self) -> str:
        """The one line a refused command prints (and assert it printed only that)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("incdet: error: "), self.err
        return lines[0]


def run(*args: str | Path) -> Run:
    """``incdet ARGS`` in this process, its stdout and stderr captured (also for module-scope fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusing the command line
            code = exc.code
    result = Run(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in result.text, result.text
    return result


# Root reads files of mode 000 and writes into read-only folders: the permission cases run as this user.
UNPRIVILEGED = "nobody"
REPO = Path(__file__).resolve().parent.parent


def _drop_root() -> list[str]:
    """The command prefix that runs a command as :data:`UNPRIVILEGED` (none when not root)."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam(UNPRIVILEGED)
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", UNPRIVILEGED, "--"]
    pytest.skip("running as root, without setpriv or runuser to drop root's rights")


@contextlib.contextmanager
def unprivileged_folder(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, or as root a folder of :data:`UNPRIVILEGED`'s own (pytest's are root's alone, mode
    700): what root puts there it can read, and it writes its outputs there."""
    prefix = _drop_root()
    if not prefix:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="incdet-unprivileged-") as folder:
        user = pwd.getpwnam(UNPRIVILEGED)
        os.chown(folder, user.pw_uid, user.pw_gid)
        yield Path(folder)


def run_unprivileged(*args: str | Path) -> Run:
    """``incdet ARGS`` without root's rights: as :data:`UNPRIVILEGED` in a new process when root (the
    files it reads must be readable by that user: see :func:`unprivileged_folder`), else :func:`run`."""
    prefix = _drop_root()
    if not prefix:
        return run(*args)
    home = tempfile.mkdtemp(prefix="incdet-home-")  # for the caches of the libraries it imports
    user = pwd.getpwnam(UNPRIVILEGED)
    os.chown(home, user.pw_uid, user.pw_gid)
    env = {**os.environ, "HOME": home, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "incdet.cli", *map(str, args)], cwd=home, env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(home)
    result = Run(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.text, result.text
    return result
