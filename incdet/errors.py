"""The one exception type that reaches users as a one-line message."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: an unreadable image, a malformed annotation, a wrong checkpoint.

    ``str(error)`` is a single line ``"<path>: <what is wrong>"`` so that the CLI can
    print it as is and batch jobs can list the items they skipped.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")
