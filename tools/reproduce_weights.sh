#!/usr/bin/env bash
# Rebuild the shipped demo detector (incdet/weights/demo, README: "The shipped ensemble") from nothing:
# the demo data, then the demo recipe as one job (proposals, backbone, three members, MultiBox, val
# results, bundle). About 20 min on an idle 2-core CPU; rerun it after an interruption to continue.
#   bash tools/reproduce_weights.sh [OUT]     (default OUT: runs/demo; the bundle is OUT/bundle)
# Copy OUT/bundle over incdet/weights/demo to ship it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/demo}"
[ -d demo/train ] || incdet data demo --out demo
incdet train detector --train demo/train/annotations --val demo/val/annotations --out "$out" --recipe demo
