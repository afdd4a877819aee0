"""Ground-truth crops of a detection dataset as an ImageFolder tree, for ``incdet train backbone``.

    python tools/detection_crops.py demo/train/annotations OUT/train
    python tools/detection_crops.py demo/val/annotations OUT/val

(:mod:`incdet.train.backbone.crops`; ``incdet train detector`` makes them itself.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from incdet.data.dataset import load_dataset
from incdet.train.backbone.crops import write_crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", help="ground truth in any format load_dataset reads")
    parser.add_argument("out", type=Path, help="output folder: OUT/<class>/*.png")
    args = parser.parse_args()
    print(f"{write_crops(load_dataset(args.annotations), args.out)} crops written to {args.out}")


if __name__ == "__main__":
    main()
