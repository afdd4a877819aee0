"""A model bundle: one folder that holds a whole trained detector, so that users pass one path.

    BUNDLE/
      bundle.json          what the detector is: the files below with their SHA-256, settings, provenance
      members/NAME.pt      the region classifiers of the ensemble (NAME: the file's stem when it was bundled)
      multibox.pt          the MultiBox network, when the detector has one

``bundle.json`` (format ``incdet.bundle.v1``) records the class list; per member its file, SHA-256,
architecture, crop size, context padding and whether it regresses boxes; the MultiBox file, its
SHA-256 and :class:`MultiBoxSettings` (or null); the selective-search settings; the stage-4
:class:`SelectionSettings`; and three free mappings for people: ``recipe`` (how it was trained),
``provenance`` (data, commit, seeds) and ``results`` (validation mAP per member and of the ensemble).

:func:`write_bundle` writes the whole folder beside its target and renames it into place, so a
killed write never leaves a half bundle; :func:`read_bundle` refuses a bundle whose files are
missing or differ from the bytes it records, naming the file. :meth:`incdet.pipeline.Pipeline.from_bundle`
builds the detector from one; ``incdet detect --model BUNDLE`` and ``incdet export --model BUNDLE``
take one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from incdet.classify.classifier_file import load_region_classifier
from incdet.classify.ensemble import check_classes
from incdet.errors import InputError
from incdet.io import file_sha256, write_json
from incdet.multibox.multibox_file import load_multibox
from incdet.multibox.propose import MultiBoxSettings
from incdet.postprocess.nms import SelectionSettings
from incdet.proposals.settings import SearchSettings

FORMAT = "incdet.bundle.v1"
MANIFEST = "bundle.json"
MEMBERS = "members"
MULTIBOX = "multibox.pt"


@dataclass(frozen=True)
class Bundle:
    """A bundle as :func:`read_bundle` found it: model paths absolute, settings as their dataclasses;
    ``sha256``: that of ``bundle.json`` (which names every file's SHA-256, so it identifies the whole bundle)."""

    folder: Path
    classes: tuple[str, ...]
    members: list[Path]
    multibox: Path | None
    multibox_settings: MultiBoxSettings
    search: SearchSettings
    selection: SelectionSettings
    recipe: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    def record(self) -> dict[str, str]:
        """The bundle as a job's settings record it: its folder's name and the SHA-256 of its bundle.json."""
        return {"folder": self.folder.name, "sha256": self.sha256}


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a model bundle: a folder with a bundle.json."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file()


def write_bundle(
    folder: str | Path,
    members: Sequence[str | Path],
    multibox: str | Path | None,
    *,
    search: SearchSettings,
    multibox_settings: MultiBoxSettings = MultiBoxSettings(),
    selection: SelectionSettings = SelectionSettings(),
    recipe: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    names: Sequence[str] | None = None,
) -> Bundle:
    """Write a bundle of the region classifiers ``members`` (one ensemble: one class list) and the
    MultiBox network ``multibox`` (or None) at ``folder``, and return it as :func:`read_bundle` does.
    The members are ``members/<name>.pt`` in it: ``names`` (e.g. a recipe's member names), by default
    their files' stems, numbered where two are alike.

    Every model file is loaded once (a broken one is refused now, not when someone detects with the
    bundle) and copied in. The folder is written complete beside ``folder`` and renamed into place:
    ``folder`` holds the old bundle or the whole new one, never a half one. An existing bundle or empty
    folder at ``folder`` is replaced; any other existing folder or file is refused (InputError naming it).
    """
    folder = Path(folder)
    _check_target(folder)
    extras = {"recipe": dict(recipe or {}), "provenance": dict(provenance or {}), "results": dict(results or {})}
    for key, value in extras.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key} must be JSON-serialisable: {exc}") from None
    if not members:
        raise InputError(folder, "a model bundle needs at least one region-classifier model")

    specs = check_classes([(path, load_region_classifier(path)[0]) for path in members])
    if multibox is not None:
        load_multibox(multibox)

    names = _unique_stems([f"{name}.pt" for name in names] if names is not None else members)
    if len(names) != len(members):
        raise ValueError(f"{len(names)} names for {len(members)} members")
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and beside the target (same file system, so the rename is atomic); named after its writer.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-{os.getpid()}-", dir=folder.parent))
    try:
        (tmp / MEMBERS).mkdir()
        records = []
        for path, name, spec in zip(members, names, specs):
            file = f"{MEMBERS}/{name}.pt"
            records.append({"file": file, "sha256": _copy_in(path, tmp / file), "arch": spec.arch,
                            "input_size": spec.input_size, "context_pad": spec.context_pad, "bbox_reg": spec.bbox_reg})
        multibox_record = None
        if multibox is not None:
            multibox_record = {"file": MULTIBOX, "sha256": _copy_in(multibox, tmp / MULTIBOX), "settings": asdict(multibox_settings)}
        write_json(tmp / MANIFEST, {
            "format": FORMAT, "classes": list(specs[0].classes), "members": records, "multibox": multibox_record,
            "search": search.to_dict(), "selection": asdict(selection), **extras,
        })
        _fsync(tmp)
        _move_into_place(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return read_bundle(folder)


def read_bundle(folder: str | Path) -> Bundle:
    """The bundle at ``folder``, after checking its format and that every file it names is there with
    the SHA-256 it records; each problem is a one-line InputError naming the file."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(folder, "not a model bundle (no such folder)" if not folder.exists() else "not a model bundle (a file, not a folder)")
    if not manifest.is_file():
        raise InputError(folder, f"not a model bundle (no {MANIFEST})")
    try:
        text = manifest.read_bytes()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(manifest, f"not a readable bundle file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "format" not in data:
        raise InputError(manifest, f"not a model bundle file (no 'format'; expected {FORMAT!r})")
    if data["format"] != FORMAT:
        raise InputError(manifest, f"unknown bundle format {data['format']!r} (this incdet reads {FORMAT!r}; a newer incdet may have written it)")

    def problem(text: str) -> InputError:
        return InputError(manifest, text)

    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise problem("'classes' must be a non-empty list of class names")
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise problem("'members' must be a non-empty list of region classifiers")
    multibox = data.get("multibox")
    if multibox is not None and not isinstance(multibox, dict):
        raise problem("'multibox' must be a mapping or null")
    search = _settings(problem, "search", SearchSettings, data.get("search"))
    selection = _settings(problem, "selection", SelectionSettings, data.get("selection"))
    multibox_settings = _settings(problem, "multibox.settings", MultiBoxSettings, multibox.get("settings", {})) if multibox else MultiBoxSettings()
    extras = {}
    for key in ("recipe", "provenance", "results"):
        extras[key] = data.get(key) or {}
        if not isinstance(extras[key], dict):
            raise problem(f"'{key}' must be a mapping")

    member_paths = [_checked_file(folder, manifest, record, f"members[{i}]") for i, record in enumerate(members)]
    multibox_path = _checked_file(folder, manifest, multibox, "multibox") if multibox else None
    return Bundle(folder.absolute(), tuple(classes), member_paths, multibox_path, multibox_settings, search, selection,
                  sha256=hashlib.sha256(text).hexdigest(), **extras)


def _settings(problem, key: str, kind: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise problem(f"'{key}' must be a mapping of {kind.__name__} fields")
    try:
        return kind(**values)
    except (TypeError, ValueError) as exc:
        raise problem(f"'{key}': {exc}") from None


def _checked_file(folder: Path, manifest: Path, record: Any, where: str) -> Path:
    """The absolute path of the file ``record`` names, after checking it exists with the recorded SHA-256."""
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) or not isinstance(record.get("sha256"), str):
        raise InputError(manifest, f"{where} must be a mapping with 'file' and 'sha256'")
    name = PurePosixPath(record["file"])
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise InputError(manifest, f"{where}: {record['file']!r} is not a path inside the bundle")
    path = folder.absolute().joinpath(*name.parts)
    shown = folder / Path(*name.parts)
    if not path.is_file():
        raise InputError(shown, "missing (the bundle records it)")
    actual, recorded = file_sha256(path), record["sha256"]
    if actual != recorded:
        raise InputError(shown, f"SHA-256 {actual[:12]}... differs from the {recorded[:12]}... the bundle records (a changed or damaged file)")
    return path


def _check_target(folder: Path) -> None:
    if folder.is_dir():
        if is_bundle(folder) or not any(folder.iterdir()):
            return
        raise InputError(folder, "exists and is not a model bundle (not empty, no bundle.json); refusing to replace it")
    if folder.exists() or folder.is_symlink():
        raise InputError(folder, "exists and is not a folder")


def _unique_stems(paths: Sequence[str | Path]) -> list[str]:
    """Each file's stem, with -2, -3 ... added to repeats (two members named model.pt in different folders)."""
    names: list[str] = []
    for path in paths:
        stem, name, n = Path(path).stem, Path(path).stem, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def _copy_in(source: str | Path, target: Path) -> str:
    """Copy a model file into the bundle being written; the SHA-256 of the copy."""
    shutil.copyfile(source, target)
    with open(target, "rb+") as f:
        os.fsync(f.fileno())
    return file_sha256(target)


def _fsync(folder: Path) -> None:
    for path in (folder / MEMBERS, folder):
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _move_into_place(tmp: Path, folder: Path) -> None:
    """Rename the finished ``tmp`` to ``folder``: atomic over nothing or an empty folder; an old bundle
    is first moved aside (hidden, beside it) and removed once the new one is in place."""
    _check_target(folder)  # again: something may have appeared there while the files were copied
    if not folder.exists() or not any(folder.iterdir()):
        os.replace(tmp, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-{os.getpid()}-", dir=folder.parent))
    os.replace(folder, old / folder.name)
    try:
        os.replace(tmp, folder)
    except BaseException:
        os.replace(old / folder.name, folder)  # put the old bundle back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
