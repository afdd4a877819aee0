"""Region training under DDP on 2 CPU processes (gloo): each rank trains on a disjoint half of every
epoch's images, the halves cover the split, epochs reshuffle, every rank searches its share of the
proposals, and only rank 0 exports and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from region_training_data import region_config, write_config, write_shapes

from incdet.classify.classifier_file import load_region_classifier
from incdet.proposals.store import ProposalStore

# Run as a script, so Lightning's DDP launcher re-runs it (and its instrumentation) for rank 1.
SCRIPT = '''
import functools, json, os, sys
from pathlib import Path
import lightning as L
import incdet.train.regions.data as data
import incdet.train.regions.train as train
from incdet.cli import main
from incdet.proposals.store import ProposalStore

out = Path(sys.argv[2])

class SeenImages(L.Callback):
    """The training images each rank's batches hold, per epoch."""
    def __init__(self):
        self.seen = {}
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        keys = [trainer.datamodule.datasets["train"].annotations.key(i) for i in batch.indices.tolist()]
        self.seen.setdefault(trainer.current_epoch, []).extend(keys)
    def on_train_end(self, trainer, module):
        (out / f"seen_rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))

real_propose = data.propose_folder
def counting_propose(items, store, proposer, **kwargs):
    items = list(items)
    rows = len(ProposalStore(store, readonly=True)) if Path(store).exists() else 0
    with open(out / "fill_store_calls.txt", "a") as calls:
        calls.write(f"{os.environ.get('LOCAL_RANK', '0')} {Path(store).name} {rows} {len(items)}\\n")
    return real_propose(items, store, proposer, **kwargs)
data.propose_folder = counting_propose
train.train_regions = functools.partial(train.train_regions, callbacks=[SeenImages()])

if __name__ == "__main__":
    sys.exit(main(["train", "regions", "--config", sys.argv[1]]))
'''


def test_ddp_ranks_see_disjoint_halves_and_each_searches_its_share_of_the_proposals(tmp_path: Path) -> None:
    paths = {"train": write_shapes(tmp_path / "train", 8, seed=0), "val": write_shapes(tmp_path / "val", 2, seed=1)}
    cfg = region_config({**paths, "train_store": "", "val_store": ""}, tmp_path, max_epochs=2,
                        trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp", "enable_progress_bar": False,
                                 "enable_model_summary": False, "num_sanity_val_steps": 0})
    del cfg["data"]["train_proposals"], cfg["data"]["val_proposals"]  # the default stores: out_dir/proposals/
    cfg["data"]["proposal_workers"] = 1
    config = write_config(tmp_path / "ddp.yaml", cfg)
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, str(script), str(config), str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Starting with 2 processes" in run.stdout + run.stderr
    assert run.stdout.count("region classifier written to") == 1  # only rank 0 exports and reports

    # Proposals: each rank searched its share into a store of its own, before training, and the shares
    # were merged into the default stores.
    calls = (tmp_path / "fill_store_calls.txt").read_text().splitlines()
    assert sorted(calls) == ["0 train.rank-0-of-2.db 0 4", "0 val.rank-0-of-2.db 0 1", "1 train.rank-1-of-2.db 0 4",
                             "1 val.rank-1-of-2.db 0 1"]
    assert len(ProposalStore(tmp_path / "run" / "proposals" / "train.db", readonly=True)) == 8
    assert sorted(p.name for p in (tmp_path / "run" / "proposals").iterdir()) == ["train.db", "val.db"]

    ranks = [json.loads((tmp_path / f"seen_rank{r}.json").read_text()) for r in (0, 1)]
    everything = sorted(f"{i:03d}.png" for i in range(8))
    for epoch in ("0", "1"):
        first, second = ranks[0][epoch], ranks[1][epoch]
        assert len(first) == len(second) == 4 and not set(first) & set(second)
        assert sorted(first + second) == everything
    assert ranks[0]["0"] != ranks[0]["1"]  # a new order (and split) every epoch
    spec, _ = load_region_classifier(tmp_path / "model.pt")
    assert spec.metadata["epochs"] == 2
