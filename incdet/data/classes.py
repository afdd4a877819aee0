"""Class-list files: one class name per line, in output-index order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from incdet.errors import InputError


def read_class_list(path: str | Path) -> list[str]:
    """Class names in index order: one per line (``classes.txt``), or incdet's ILSVRC TSV
    (``index<TAB>synset<TAB>name``, whose synset column is the class). ``#`` starts a comment."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read class list ({exc})") from None
    rows = [line.split("#", 1)[0].strip() for line in lines]
    rows = [row for row in rows if row]
    if rows and rows[0].split("\t") == ["index", "synset", "name"]:
        rows = [row.split("\t")[1] for row in rows[1:]]
    if not rows:
        raise InputError(path, "class list is empty")
    duplicates = sorted(name for name, n in Counter(rows).items() if n > 1)
    if duplicates:
        raise InputError(path, f"class list names {', '.join(duplicates)} more than once")
    return rows
