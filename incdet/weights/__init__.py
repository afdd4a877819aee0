"""The models shipped with incdet, trained on the generated demo data (tools/reproduce_weights.sh
makes every one of them; README.md: "The shipped ensemble").

The one place that names the shipped files, so commands, benchmarks and tests agree on them.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
# The demo ensemble, as GoogLeNet's entry varied its members: architecture, crop size, context, seed
# (configs/demo_member_<name>.yaml). Each carries a box regressor.
DEMO_REGION_MODELS = tuple(WEIGHTS_DIR / f"demo_{name}.pt" for name in ("googlenet64", "inception75", "googlenet80"))
DEMO_MULTIBOX = WEIGHTS_DIR / "demo_multibox.pt"
SHIPPED = (*DEMO_REGION_MODELS, DEMO_MULTIBOX)


def shipped_name(path: str | Path) -> str | None:
    """The name of the shipped file ``path`` is, else None: another machine finds the shipped files
    by name in its own install, wherever that is."""
    path = Path(path).resolve()
    return path.name if path in SHIPPED else None


def shipped_file(name: str) -> Path:
    """This install's copy of the shipped file ``name``."""
    path = WEIGHTS_DIR / name
    if path not in SHIPPED:
        raise ValueError(f"{name!r} is not a file shipped with incdet ({', '.join(p.name for p in SHIPPED)})")
    return path
