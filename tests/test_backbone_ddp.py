"""The same backbone config runs data-parallel by setting trainer.devices and trainer.strategy only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from incdet.nets.backbone_file import load_backbone

CONFIG = """\
data: {{format: digits, batch_size: 16, num_workers: 0}}
model: {{arch: googlenet, width: 0.25, low_res: true, input_size: 16}}
optim: {{ema_decay: 0.9, ema_start_epoch: 1}}
max_epochs: 2
torch_threads: 1
out_dir: {out}/run
export: {out}/backbone.pt
export_state_dict: null
trainer: {{accelerator: cpu, devices: 2, strategy: ddp, limit_train_batches: 2, limit_val_batches: 1, enable_progress_bar: false}}
"""


def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    config = tmp_path / "ddp.yaml"
    config.write_text(CONFIG.format(out=tmp_path))
    script = Path(sys.executable).with_name("incdet")  # Lightning's ddp re-launches this command per rank
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([str(script), "train", "backbone", "--config", str(config)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Starting with 2 processes" in run.stdout + run.stderr
    assert run.stdout.count("backbone written to") == 1  # only rank 0 exports and reports
    spec, _ = load_backbone(tmp_path / "backbone.pt")
    assert spec.metadata["epochs"] == 2 and "val_top1" in spec.metadata["metrics"]
