"""bench/eval.py runs end to end (on a small size) and its two evaluators agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "eval.py"


def test_bench_runs_and_evaluators_agree(capsys):
    spec = importlib.util.spec_from_file_location("bench_eval", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    numbers = bench.main(["--images", "60", "--classes", "8", "--dets-per-image", "20"])
    out = capsys.readouterr().out
    assert "speed-up: incdet is" in out and "60 images" in out
    # The data are seeded, so both evaluators' mAPs are fixed numbers (measured 0.418116 and 0.419738);
    # only the timings (printed, compared in the benchmark itself) vary from run to run.
    assert numbers["incdet_map"] == pytest.approx(0.418116, abs=1e-6)
    assert numbers["pycocotools_map"] == pytest.approx(0.419738, abs=1e-6)
    assert numbers["max_ap_difference"] <= 1 / 101  # interpolation only (docs/evaluation.md)
    # the same detections from a JSON file and from a devkit submission file: the same mAP
    assert "from a devkit submission file" in out
    assert numbers["submission_file_map"] == pytest.approx(numbers["json_file_map"], abs=1e-12)
    assert numbers["json_file_map"] == pytest.approx(numbers["incdet_map"], abs=1e-12)
