"""Class-list files: one class name per line, in output-index order."""

from __future__ import annotations

from pathlib import Path

from incdet.errors import InputError


def read_class_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "class list missing (one class name per line)")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not classes or len(set(classes)) != len(classes):
        raise InputError(path, "class list is empty or has duplicate names")
    return classes
