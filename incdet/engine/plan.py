"""How a job's images are cut into units of work, and which units a shard takes.

The unit is a *group* of consecutive images (by ``image_id``): MultiBox and the ensemble run on a
group's images as one batch, and a group is written, skipped on resume, and given to a shard as a
whole. The groups are fixed by the whole input list, never by what is left to do, because a
network's output for one image can differ in the last bits with the batch it was computed in
(oneDNN and cuDNN choose kernels by batch size): cutting the same groups every time is what makes
a resumed, sharded or Ray run write byte-identical results to one uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from incdet.errors import InputError
from incdet.io import is_url
from incdet.structures import ImageRecord


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``: every ``count``-th group, starting with group ``index - 1``."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """``"I/N"`` (``--shard``), or the whole job for None."""
        if text is None:
            return cls()
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            index = count = 0
        if not 1 <= index <= count:
            raise InputError(None, f"--shard must be I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def suffix(self) -> str:
        """What a shard adds to its output names (nothing for the whole job)."""
        return "" if self.whole else f".shard-{self.index}-of-{self.count}"


def plan_groups(images: Sequence[ImageRecord], group_size: int, shard: Shard = Shard()) -> list[list[ImageRecord]]:
    """The groups ``shard`` processes: group k holds the images with ``image_id`` in
    [k * group_size, (k + 1) * group_size) of the whole input, and shard I of N takes the groups
    with k % N == I - 1 (so N shards split a folder evenly and each image is in exactly one)."""
    if group_size < 1:
        raise InputError(None, f"--batch-images must be at least 1, got {group_size}")
    ordered = sorted(images, key=lambda r: r.image_id)
    groups = [ordered[start : start + group_size] for start in range(0, len(ordered), group_size)]
    return [group for k, group in enumerate(groups) if k % shard.count == shard.index - 1]


class RecordTable:
    """A job's image records as three flat arrays in files of ``folder``, read by index.

    Worker processes get the folder's name and memory-map the files (one copy, in the page cache,
    shared by every worker), instead of each unpickling the whole record list: at a million images
    that list is gigabytes over 16 workers. Rows are the records in the order given.
    """

    FILES = ("paths", "path_ends", "key_ends", "image_ids")

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in self.FILES}

    @classmethod
    def write(cls, records: Sequence[ImageRecord], folder: str | Path) -> RecordTable:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [str(r.path).encode("utf-8", "surrogateescape") for r in records]
        keys = [r.key.encode("utf-8", "surrogateescape") for r in records]
        blob = b"".join(p + k for p, k in zip(paths, keys))
        lengths = np.array([(len(p), len(k)) for p, k in zip(paths, keys)], np.int64).reshape(-1, 2)
        ends = np.cumsum(lengths.ravel())
        arrays = {"paths": np.frombuffer(blob, np.uint8) if blob else np.zeros(0, np.uint8),
                  "path_ends": ends[0::2], "key_ends": ends[1::2],
                  "image_ids": np.array([r.image_id for r in records], np.int64)}
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array)
        return cls(folder)

    def __len__(self) -> int:
        return len(self._arrays["image_ids"])

    def __getitem__(self, index: int) -> ImageRecord:
        a = self._arrays
        start = int(a["key_ends"][index - 1]) if index else 0
        path_end, key_end = int(a["path_ends"][index]), int(a["key_ends"][index])
        text = a["paths"][start:key_end].tobytes().decode("utf-8", "surrogateescape")
        cut = len(a["paths"][start:path_end].tobytes().decode("utf-8", "surrogateescape"))
        path = text[:cut]
        return ImageRecord(path if is_url(path) else Path(path), text[cut:], int(a["image_ids"][index]))

    def __getstate__(self) -> dict:
        return {"folder": self.folder}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"])
