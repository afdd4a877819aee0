"""Joining the shards of one job (``--shard I/N`` on N machines, then ``--merge``): detection work
folders into the job's COCO-results JSON, proposal stores into the job's store. One check for both
kinds: every shard 1..N of the same job (settings and input list), each finished, none overlapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incdet.engine.work import Summary, WorkFolder, join_work_folders
from incdet.errors import InputError
from incdet.io import check_output_path
from incdet.proposals.store import ProposalStore, is_store_path


@dataclass
class Joined:
    """What :func:`join_shards` joined: the shards, and the detections' summary (detection jobs) or
    the rows written (proposal stores)."""

    shards: list[Path]
    summary: Summary | None = None
    rows: int = 0


def shard_paths(out: Path) -> list[Path]:
    """Every shard's work folder (``OUT.shard-I-of-N.parts``) or store (``OUT_STEM.shard-I-of-N.db``) beside ``out``."""
    pattern = f"{out.stem}.shard-*-of-*.db" if is_store_path(out) else f"{out.name}.shard-*-of-*.parts"
    return sorted(out.parent.glob(pattern))


def check_shards(shards: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Refuse to join anything but every shard 1..N of one job, each finished: ``shards`` pairs each
    shard's file or folder with its manifest (``settings``, ``inputs``, ``shard`` [I, N], ``complete``),
    for detection work folders and proposal stores alike."""
    first_path, first = shards[0]
    for path, manifest in shards:
        if manifest.get("settings") != first.get("settings") or manifest.get("inputs") != first.get("inputs"):
            raise InputError(path, f"is a shard of another job than {first_path} (other settings or input images)")
        if not manifest.get("complete"):
            index, count = manifest.get("shard") or ("?", "?")
            raise InputError(path, f"shard {index}/{count} is not finished; run it to the end first")
    count = first["shard"][1]
    found = sorted(m["shard"][0] for _, m in shards)
    if any(m["shard"][1] != count for _, m in shards) or found != list(range(1, count + 1)):
        raise InputError(first_path, f"merge needs each of the {count} shards once, got shards {found} of "
                                     f"{sorted({m['shard'][1] for _, m in shards})}")


def join_shards(out: str | Path, shards: Sequence[str | Path] | None = None) -> Joined:
    """Join ``shards`` (default: :func:`shard_paths` of ``out``) into ``out``: a proposal store
    (``.db``), else a detection job's COCO-results JSON, equal to one run's output."""
    out = check_output_path(out)
    store = is_store_path(out)
    found = [Path(s) for s in shards] if shards else shard_paths(out)
    if not found:
        what = f"shard stores ({out.stem}.shard-I-of-N.db)" if store else f"shard work folders ({out.name}.shard-I-of-N.parts)"
        raise InputError(out, f"no {what} beside it to merge")
    missing = [s for s in found if not (s.is_file() if store else s.is_dir())]
    if missing:
        raise InputError(missing[0], "no such proposal store" if store else "no such work folder")
    if not store:
        manifests = [WorkFolder.read_manifest(folder) for folder in found]
        check_shards(list(zip(found, manifests)))
        return Joined(found, summary=join_work_folders(found, manifests, out))
    opened = [ProposalStore(s, readonly=True) for s in found]
    check_shards([(s.path, {**s.job, "settings": s.settings}) for s in opened])
    with ProposalStore(out, opened[0].settings) as joined:
        return Joined(found, rows=sum(joined.update_from(s) for s in opened))
