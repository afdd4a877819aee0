"""tools/gpu_check.py, which runs once on a lent GPU with minutes to spare, so it must work the first time
there: its --quick run takes every section's code path on the CPU, and every row must hold a number."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "gpu_check.py"
SECTIONS = [("1.", "32-true"), ("1.", "bf16-mixed"), ("2.", "fp32"), ("2.", "bf16"), ("3.", "bf16"), ("4.", "bf16-mixed")]
UNITS = {"1.": "steps/s", "2.": "crops/s", "3.": "images/s", "4.": "steps/s"}


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quick_run_fills_every_row_with_a_number(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    table = json.loads(out.read_text())
    rows = table["rows"]
    assert [(r["section"][:2], r["precision"]) for r in rows] == SECTIONS
    for row in rows:
        assert row["error"] is None, row
        result = row["result"]
        assert math.isfinite(result["value"]) and result["value"] > 0, row
        assert result["unit"] == UNITS[row["section"][:2]]
        assert result["memory_gib"] is None  # on the CPU; torch.cuda.max_memory_allocated on a GPU
    assert "of the dense bf16 peak" not in rows[2]["result"]["notes"] and "peak unknown" in rows[2]["result"]["notes"]
    assert "bound by" in rows[4]["result"]["notes"] and "search" in rows[4]["result"]["notes"]

    # stdout is the header line and one markdown table, a line per row.
    lines = run.stdout.strip().splitlines()
    assert lines[0] == table["header"] and "torch " in lines[0] and "torchvision " in lines[0] and "cpu" in lines[0]
    assert lines[2].startswith("| measurement |") and len(lines) == 4 + len(SECTIONS)
    assert "error" not in run.stdout


def test_a_failing_section_fills_its_row_with_the_error_and_the_others_still_run(gpu_check, monkeypatch, tmp_path: Path) -> None:
    def broken(setup, precision):
        raise RuntimeError("CUDA error: out of memory\nmore lines")

    def fine(setup, precision):
        return gpu_check.Result(2.5, "steps/s", None, "ok")

    monkeypatch.setattr(gpu_check, "sections", lambda setup: [("first", "fp32", broken), ("second", "bf16", fine)])
    rows = gpu_check.run_sections(gpu_check.Setup(torch.device("cpu"), gpu_check.QUICK, tmp_path))
    assert rows[0].result is None and rows[0].error == "RuntimeError: CUDA error: out of memory"
    assert rows[1].result.value == 2.5 and rows[1].error is None
    table = gpu_check.markdown("title", rows)
    assert "| first | fp32 | **error** | | RuntimeError: CUDA error: out of memory |" in table
    assert "| second | bf16 | 2.5 steps/s | n/a | ok |" in table


@pytest.mark.parametrize(("name", "memory_gib", "tflops"), [
    ("NVIDIA H100 80GB HBM3", 79.2, 989),  # SXM
    ("NVIDIA H100 PCIe", 79.2, 756),
    ("NVIDIA H100 NVL", 93.1, 835),
    ("NVIDIA H100", 93.1, 835),  # 94 GB: the NVL card
    ("NVIDIA H200", 139.8, 989),
    ("NVIDIA H200 NVL", 139.8, 835),
    ("NVIDIA A100-SXM4-80GB", 79.2, 312),
    ("NVIDIA A10G", 22.1, 70),
    ("NVIDIA A10", 22.1, 125),
    ("NVIDIA L4", 22.0, 121),
    ("NVIDIA L40S", 44.4, 362),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 9.8, None),  # a slice of the card: its peak is not the card's
    ("Tesla V100-SXM2-16GB", 15.8, None),  # no bf16 tensor cores
    ("cpu (x86_64, 2 cores)", 23.6, None),
])
def test_the_bf16_peak_is_the_cards(gpu_check, name: str, memory_gib: float, tflops: int | None) -> None:
    peak = gpu_check.bf16_peak(name, memory_gib)
    assert (peak and round(peak / 1e12)) == tflops
