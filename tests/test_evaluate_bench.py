"""bench/eval.py runs end to end (on a small size) and its two evaluators agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "eval.py"


def test_bench_runs_and_evaluators_agree(capsys):
    spec = importlib.util.spec_from_file_location("bench_eval", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    numbers = bench.main(["--images", "60", "--classes", "8", "--dets-per-image", "20"])
    out = capsys.readouterr().out
    assert "speed-up: incdet is" in out and "60 images" in out
    assert numbers["incdet_s"] > 0 and numbers["pycocotools_s"] > 0
    assert numbers["max_ap_difference"] <= 1 / 101  # interpolation only (docs/evaluation.md)
    assert 0.0 < numbers["incdet_map"] < 1.0
    # the same detections from a JSON file and from a devkit submission file: the same mAP
    assert "from a devkit submission file" in out
    assert abs(numbers["submission_file_map"] - numbers["json_file_map"]) < 1e-12
    assert 0.0 < numbers["json_file_map"] < 1.0
