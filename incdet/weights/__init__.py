"""The models shipped with incdet, trained on the generated demo data (README.md says how).

The one place that names the shipped files, so commands, benchmarks and tests agree on them.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEMO_REGION_MODELS = (WEIGHTS_DIR / "demo_regions.pt",)
DEMO_MULTIBOX = WEIGHTS_DIR / "demo_multibox.pt"
