"""Reading images and writing output files without ever leaving a half-written file."""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import cv2
import numpy as np

from incdet.errors import InputError

if TYPE_CHECKING:
    from incdet.structures import ImageRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The rename is atomic on POSIX, so a crash or Ctrl-C never leaves a truncated output
    and never destroys the user's previous file. The temporary file is hidden and named after
    its writer (``.NAME.HOST-PID.XXXX.SUFFIX``); one left by a writer that was killed (SIGKILL
    gives no chance to clean up) is removed the next time ``path`` is written from this host.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER}-{os.getpid()}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        # On disk before the rename, and the rename on disk before returning: after a power loss the
        # path holds the old file or the whole new one, never an empty one (ext4 delays data writes).
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


_WRITER = socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def remove_orphans(folder: Path, name: str | None = None) -> None:
    """Delete the temporary files in ``folder`` (of the file ``name``, or of any) whose writer, a process
    of this host, is gone."""
    marker = f".{_WRITER}-"
    pattern = glob.escape(f".{name}{marker}") + "*" if name else f".*{glob.escape(marker)}*"
    for tmp in folder.glob(pattern):
        pid = tmp.name.rpartition(marker)[2].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


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
    """Read any common image file as an HxWx3 RGB uint8 array, in the orientation a viewer shows.

    A photo stored sideways with an EXIF orientation tag is turned upright (OpenCV applies the
    tag), so boxes are always in the frame people see. Grayscale is replicated to three
    channels, alpha and palettes are dropped and 16-bit images are scaled to 8 bits, because
    every later stage expects 8-bit RGB. Every failure is an InputError naming the file.
    """
    if is_url(path):
        data = _read_object(path)
    else:
        path = Path(path)
        if not path.exists():
            raise InputError(path, "no such file")
        if path.is_dir():
            raise InputError(path, "is a directory, not an image file")
        if not path.is_file():
            raise InputError(path, "is not a regular file (a pipe, socket or device?)")
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except PermissionError:
            raise InputError(path, "cannot read the file (permission denied)") from None
        except OSError as exc:
            raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        # IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED would not); ANYDEPTH keeps 16 bits.
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise InputError(path, "image is larger than the 2^30 pixels OpenCV decodes (or its header is corrupt)") from None
        raise InputError(path, "not a readable image (OpenCV could not decode it)") from None
    if image is None:
        raise InputError(path, "empty file" if not data.size else "not a readable image (unknown format or corrupt file)")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(path, f"unsupported pixel type {image.dtype} (8- or 16-bit images only)")
    # In place: a 10000x10000 photo is 300 MB, and a copy would double the peak memory.
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


def is_url(path: object) -> bool:
    """Whether ``path`` names an object in an object store (``s3://bucket/key``), not a local file.
    Only a string can: a ``Path`` would fold the ``//``."""
    return isinstance(path, str) and "://" in path


@functools.lru_cache(maxsize=16)
def _store(root: str) -> Any:
    """pyarrow's file system for ``root`` (``s3://bucket``), its credentials, region and endpoint from
    the usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...). pyarrow, which Ray Data reads
    object stores with, rather than code of our own: it signs requests, retries and streams."""
    try:
        from pyarrow import fs
    except ImportError:
        raise InputError(root, "object-store URLs are read with pyarrow: pip install pyarrow (or -e \".[ray]\")") from None
    try:
        return fs.FileSystem.from_uri(root)[0]
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for an unknown scheme or a bad URL differ by version
        raise InputError(root, f"not an object store pyarrow can open ({type(exc).__name__}: {exc})") from None


def _locate(url: str) -> tuple[Any, str]:
    """The object store of ``url`` and the object's path in it (``bucket/key``)."""
    scheme, rest = url.split("://", 1)
    return _store(f"{scheme}://{rest.split('/', 1)[0]}"), rest


def _read_object(url: str) -> np.ndarray:
    """The bytes of the object at ``url``. A missing object is an InputError; a network or server error
    stays an OSError, which a batch job counts as transient (retried by the next run)."""
    store, path = _locate(url)
    try:
        with store.open_input_file(path) as stream:
            return np.frombuffer(stream.read(), np.uint8)
    except FileNotFoundError:
        raise InputError(url, "no such object") from None


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """Size and modification time (ns) of an image file or object, or None when it is gone (or its
    store unreachable): if either changes, what a job made of it is stale."""
    if is_url(path):
        store, key = _locate(path)  # first: without pyarrow, the one-line InputError saying to install it
        from pyarrow import fs

        try:
            info = store.get_file_info(key)
        except OSError:
            return None
        return (info.size, info.mtime_ns) if info.type == fs.FileType.File else None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _list_objects(url: str) -> list[tuple[str, str]]:
    """(key, URL) of the images under the object-store "folder" ``url`` (keys relative to it, hidden
    names skipped, as :func:`list_images`), or of the one object ``url`` names."""
    store, base = _locate(url.rstrip("/"))  # first: without pyarrow, the one-line InputError saying to install it
    from pyarrow import fs

    scheme = url.split("://", 1)[0]
    info = store.get_file_info(base)
    if info.type == fs.FileType.File:
        return [(base.rsplit("/", 1)[-1], f"{scheme}://{base}")]
    if info.type != fs.FileType.Directory:
        raise InputError(url, "no such object or prefix")
    pairs = []
    for entry in store.get_file_info(fs.FileSelector(base, recursive=True)):
        key = entry.path[len(base) + 1:]
        if entry.type == fs.FileType.File and Path(key).suffix.lower() in IMAGE_SUFFIXES \
                and not any(part.startswith(".") for part in key.split("/")):
            pairs.append((key, f"{scheme}://{entry.path}"))
    if not pairs:
        raise InputError(url, f"no image files ({', '.join(IMAGE_SUFFIXES)}) under this prefix")
    return sorted(pairs)


def list_images(folder: str | Path) -> list[Path]:
    """Image files anywhere under ``folder`` (sub-folders included, hidden files and folders skipped),
    sorted by their path relative to it; a clear error if there are none. A folder named like an image
    (``sub.jpg``) is searched like any folder; a pipe or broken link named like one is listed, so that
    reading it reports it as a skipped item rather than it vanishing without a word."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a directory")
    images = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
         and not any(part.startswith(".") for part in p.relative_to(folder).parts) and not p.is_dir()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not images:
        raise InputError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or its sub-folders")
    return images


def collect_images(items: Sequence[str | Path]) -> list[ImageRecord]:
    """The images of a batch job: files named directly and every image under named folders.

    Each is keyed by its path relative to the folder it was found in (``sub/0001.jpg``; a file named
    directly: its file name), so two sub-folders may both hold ``0001.jpg``. The list is sorted by
    key and each file appears once; ``image_id`` is the position in it, so it does not depend on the
    order of ``items`` and is the same in every shard and resumed run of the job. Two different
    files with one key (``a/x.png`` and ``b/x.png`` given as folders ``a`` and ``b``) are refused.
    Paths are made absolute in the folder the job starts in: a Ray worker reads them from a folder of its own.
    An item may also be an object-store URL (``s3://bucket/prefix`` or one object's URL): its images are
    listed and later read through pyarrow, keyed as in a folder, and their records keep the URL as a string.
    """
    # Imported here: structures imports torch, and `incdet --help` reads this module.
    from incdet.structures import ImageRecord

    found: dict[str, Path | str] = {}
    for item in items:
        if is_url(item):
            pairs = _list_objects(item)
        else:
            item = Path(item).absolute()
            pairs = [(p.relative_to(item).as_posix(), p) for p in list_images(item)] if item.is_dir() else [(item.name, item)]
        for key, path in pairs:
            if key in found and _same(found[key]) != _same(path):
                raise InputError(path, f"has the key {key!r} of {found[key]} too; results are keyed by the path "
                                       "relative to the folder given, so give the folder above both")
            found.setdefault(key, path)
    return [ImageRecord(found[key], key, index) for index, key in enumerate(sorted(found))]


def _same(path: Path | str) -> Path | str:
    return path if is_url(path) else Path(path).resolve()


def check_output_path(path: str | Path, *, folder: bool = False) -> Path:
    """Fail in a second, not after hours of work, when ``path`` cannot be written: a file (or, with
    ``folder``, a folder) there would be in the way, a file where a parent folder must be, or no
    permission to create it. Returns ``path``."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise InputError(path, f"is {'a file' if folder else 'a directory'}; expected {'a folder' if folder else 'a file'} path")
    parent = path if folder and path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(path, f"cannot be created: {parent} is a file, not a folder")
    if not os.access(parent if not path.exists() else path, os.W_OK):
        raise InputError(path, f"cannot be written: no permission to write in {parent}")
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, to record exactly which model or proposal file a result came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
