#!/usr/bin/env bash
# Rebuild the shipped demo models from nothing (README: "The shipped models"): the demo data, the
# ground-truth crops, two classification backbones, then the three ensemble members trained on the
# default (OpenCV) selective-search proposals. About 30 min on an idle 2-core CPU.
#   bash tools/reproduce_weights.sh
# MultiBox (incdet/weights/demo_multibox.pt) is trained on ground truth only:
#   incdet train multibox --config configs/multibox_demo.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
incdet data demo --out demo
python tools/detection_crops.py demo/train/annotations demo_crops/train
python tools/detection_crops.py demo/val/annotations demo_crops/val
incdet train backbone --config configs/backbone_demo_crops.yaml
incdet train backbone --config configs/backbone_demo_crops_v3.yaml
for member in googlenet64 inception75 googlenet80; do
    incdet train regions --config "configs/demo_member_${member}.yaml"
done
