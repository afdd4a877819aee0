"""``incdet train backbone`` and ``incdet eval-cls``: Inception classification backbones (the papers' recipes)."""
