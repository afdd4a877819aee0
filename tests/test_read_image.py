"""``read_image`` on images as users have them: EXIF-rotated photos, odd formats, and files that are
not images at all, each with a one-line message naming the file and the problem."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from incdet.errors import InputError
from incdet.io import read_image


def _marked() -> np.ndarray:
    """A 40x60 image with a red top-left corner, so every rotation and mirror is distinguishable."""
    image = np.full((40, 60, 3), 90, np.uint8)
    image[:10, :20] = (255, 0, 0)
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_image_a_viewer_shows(tmp_path, orientation: int) -> None:
    stored = Image.fromarray(_marked())
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=98)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "photo.jpg")))
    image = read_image(tmp_path / "photo.jpg")
    assert image.shape == upright.shape  # 5-8 swap width and height
    assert np.abs(image.astype(int) - upright).max() <= 2


@pytest.mark.parametrize("name, mode", [("cmyk.jpg", "CMYK"), ("palette.png", "P"), ("anim.gif", "P"),
                                        ("page.tif", "RGB"), ("photo.webp", "RGB"), ("alpha.png", "RGBA"),
                                        ("grey.png", "L"), ("deep.png", "I;16"), ("tiny.png", "RGB")])
def test_common_formats_become_8_bit_rgb(tmp_path, name: str, mode: str) -> None:
    size = (1, 1) if name == "tiny.png" else (24, 16)
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3)).astype(np.uint8))
    converted = base.convert("I;16") if mode == "I;16" else base.convert(mode)
    converted.save(tmp_path / name)
    image = read_image(tmp_path / name)
    assert image.shape == (size[1], size[0], 3) and image.dtype == np.uint8


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def _problem(path) -> str:
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(str(path)) + 2:]


def test_files_that_are_not_images_name_their_problem(tmp_path) -> None:
    (tmp_path / "notes.jpg").write_text("this is text, not a JPEG")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "huge.png").write_bytes(_png_header_only(50000, 50000))
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    assert _problem(tmp_path / "missing.png") == "no such file"
    assert _problem(tmp_path / "empty.png") == "empty file"
    assert "not a readable image" in _problem(tmp_path / "notes.jpg")
    assert "not a readable image" in _problem(tmp_path / "truncated.jpg")
    assert "larger than the 2^30 pixels" in _problem(tmp_path / "huge.png")
    assert _problem(tmp_path / "folder.jpg") == "is a directory, not an image file"
    assert "not a regular file" in _problem(tmp_path / "pipe.jpg")


def test_an_unreadable_file_says_permission_denied(tmp_path) -> None:
    folder = Path(tempfile.mkdtemp())  # pytest's tmp_path is inside a folder only its owner may enter
    folder.chmod(0o755)
    path = folder / "secret.png"
    Image.fromarray(_marked()).save(path)
    path.chmod(0)
    if os.geteuid() != 0:
        assert _problem(path) == "cannot read the file (permission denied)"
        return
    # root reads every file, so read it from a child process that has dropped to user "nobody"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.setgid(65534)
        os.setuid(65534)
        try:
            read_image(path)
            message = "read it"
        except Exception as exc:  # noqa: BLE001 - report whatever happened to the parent
            message = f"{type(exc).__name__}: {exc}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        assert pipe.read() == f"InputError: {path}: cannot read the file (permission denied)"
    shutil.rmtree(folder)
