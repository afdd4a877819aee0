"""The detector shipped with incdet: a model bundle (:mod:`incdet.bundle`) that
``incdet train detector --recipe demo`` made from the generated demo data (tools/reproduce_weights.sh
runs that command; README.md: "The shipped ensemble").

The one place that names the shipped files, so commands, benchmarks and tests agree on them. The
bundle's own ``bundle.json`` says which they are; reading it here needs no import from the stages
above (its files' SHA-256 are checked where a bundle is loaded, by :func:`incdet.bundle.read_bundle`).
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEMO_BUNDLE = WEIGHTS_DIR / "demo"
_MANIFEST = json.loads((DEMO_BUNDLE / "bundle.json").read_text())
# The demo ensemble, as GoogLeNet's entry varied its members: crop size, context, seed
# (configs/recipes/demo.yaml). Each carries a box regressor.
DEMO_REGION_MODELS = tuple(DEMO_BUNDLE / member["file"] for member in _MANIFEST["members"])
DEMO_MULTIBOX = DEMO_BUNDLE / _MANIFEST["multibox"]["file"]
SHIPPED = (*DEMO_REGION_MODELS, DEMO_MULTIBOX)


def shipped_name(path: str | Path) -> str | None:
    """The name of the shipped file ``path`` is (its path inside the install's weights folder), else
    None: another machine finds the shipped files by name in its own install, wherever that is."""
    path = Path(path).resolve()
    return path.relative_to(WEIGHTS_DIR).as_posix() if path in SHIPPED else None


def shipped_file(name: str) -> Path:
    """This install's copy of the shipped file ``name``."""
    path = WEIGHTS_DIR / name
    if path not in SHIPPED:
        raise ValueError(f"{name!r} is not a file shipped with incdet ({', '.join(shipped_name(p) for p in SHIPPED)})")
    return path
