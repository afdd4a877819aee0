"""The models shipped with incdet, trained on the generated demo data (tools/reproduce_weights.sh
makes every one of them; README.md: "The shipped ensemble").

The one place that names the shipped files, so commands, benchmarks and tests agree on them.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
# The demo ensemble, as GoogLeNet's entry varied its members: architecture, crop size, context, seed
# (configs/demo_member_<name>.yaml). Each carries a box regressor.
DEMO_REGION_MODELS = tuple(WEIGHTS_DIR / f"demo_{name}.pt" for name in ("googlenet64", "inception75", "googlenet80"))
DEMO_MULTIBOX = WEIGHTS_DIR / "demo_multibox.pt"
