"""``incdet train regions`` end to end on tiny data: the run folder (resume, refusal, export checks,
Ctrl-C), bad images and store entries mid-epoch, and box regression learned through training."""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from fault_helpers import start
from region_training_data import make_data, region_config, write_config
from torchvision.ops import box_iou

from incdet.boxes import decode_deltas
from incdet.classify.classifier_file import load_region_classifier
from incdet.cli import main
from incdet.data.dataset import load_dataset
from incdet.io import read_image
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import FileStamp, ProposalStore
from incdet.regions.warp import warp_image_regions
from incdet.structures import Proposals
from incdet.train.config import load_config
from incdet.train.regions.config import RegionTrainConfig
from incdet.train.regions.crops import mirror_regions
from incdet.train.regions.train import train_regions
from incdet.transforms import image_to_tensor


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_data(tmp_path_factory.mktemp("regions_train"), train=8, val=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(paths: dict[str, Path], tmp_path: Path, **overrides) -> RegionTrainConfig:
    return load_config(write_config(tmp_path / "config.yaml", region_config(paths, tmp_path, **overrides)), RegionTrainConfig)


def test_a_rerun_is_refused_unless_resumed_and_resuming_continues_the_run(data, tmp_path, capsys) -> None:
    path = write_config(tmp_path / "a.yaml", region_config(data, tmp_path))
    assert main(["train", "regions", "--config", str(path)]) == 0
    spec, _ = load_region_classifier(tmp_path / "model.pt")
    assert spec.metadata["epochs"] == 1 and 0 <= spec.metadata["metrics"]["val_acc"] <= 1
    assert main(["train", "regions", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'run'}: already holds a training run (checkpoints/last.ckpt); set resume: true" in err

    resumed = write_config(tmp_path / "b.yaml", region_config(data, tmp_path, resume=True, max_epochs=2))
    assert main(["train", "regions", "--config", str(resumed)]) == 0
    spec, _ = load_region_classifier(tmp_path / "model.pt")
    assert spec.metadata["epochs"] == 2
    rows = (tmp_path / "run" / "logs").rglob("metrics.csv")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["epoch=1-step=8.ckpt", "last.ckpt"]
    assert len(list(rows)) == 2  # a CSV log per session, one run folder


def test_resume_true_without_a_checkpoint_and_bad_export_paths_fail_before_training(data, tmp_path, capsys) -> None:
    assert main(["train", "regions", "--config", str(write_config(tmp_path / "r.yaml", region_config(data, tmp_path, resume=True)))]) == 2
    assert "last.ckpt: resume: true, but there is no checkpoint to continue from" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.pt").mkdir()
    for export, message in ((tmp_path / "afile" / "model.pt", f"export: cannot be created: {tmp_path / 'afile'} is a file"),
                            (tmp_path / "adir.pt", "export: is a directory; expected a file path")):
        path = write_config(tmp_path / "e.yaml", region_config(data, tmp_path, export=str(export)))
        assert main(["train", "regions", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{export}: " in err and message in err
    assert not (tmp_path / "run").exists()  # refused before any training


def test_bad_images_and_store_entries_are_skipped_once_and_training_goes_on(data, tmp_path, caplog) -> None:
    root = tmp_path / "copy"
    for split in ("train", "val"):  # copy2 keeps the modification times, so the stored boxes stay current
        shutil.copytree(data[split].parent, root / split)
        shutil.copy2(data[f"{split}_store"], root / f"{split}.db")
    copied = {"train": root / "train" / "annotations", "val": root / "val" / "annotations",
              "train_store": root / "train.db", "val_store": root / "val.db"}
    with sqlite3.connect(root / "train.db") as db:  # a corrupt row: 7 bytes of boxes
        db.execute("UPDATE proposals SET boxes = ? WHERE key = '002.png'", (b"1234567",))
    broken = root / "train" / "images" / "005.png"

    class BreakAnImage(L.Callback):  # after the proposals are stored: the image fails mid-run
        def on_train_start(self, trainer, module) -> None:
            broken.write_bytes(b"no longer a PNG")

    cfg = _config(copied, tmp_path, max_epochs=2, data={"num_workers": 1})
    with caplog.at_level(logging.WARNING, logger="incdet"):
        train_regions(cfg, callbacks=[BreakAnImage()])
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert sorted(messages) == sorted([f"skipped {broken}: not a readable image (unknown format or corrupt file)",
                                       f"skipped {root / 'train.db'}: entry '002.png' is corrupt (7 bytes of boxes, 60 sources)"])
    spec, _ = load_region_classifier(cfg.export)
    assert spec.metadata["epochs"] == 2


def test_ctrl_c_stops_training_with_exit_130_and_no_export(data, tmp_path) -> None:
    cfg = region_config(data, tmp_path, max_epochs=1000)
    path = write_config(tmp_path / "c.yaml", cfg)
    process = start(["train", "regions", "--config", str(path)], tmp_path)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "incdet: interrupted" and "Traceback" not in err
    assert not (tmp_path / "model.pt").exists()


def _loose_proposals(data: dict[str, Path], path: Path) -> Path:
    """A store whose boxes around each object are all 1.3x too large (plus a little jitter), and random
    background boxes: a regressor that learns anything at all learns to shrink them."""
    split = load_dataset(data["train"])
    rng = np.random.default_rng(0)
    with ProposalStore(path, SearchSettings().to_dict()) as store:
        for ann in split.annotations:
            box = ann.boxes[0]
            centre, size = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * 1.3
            around = np.concatenate([centre - size / 2, centre + size / 2])[None] + rng.normal(0, 0.04, (20, 4)) * np.tile(size, 2)
            corners = rng.uniform(0, 60, (20, 2))
            background = np.concatenate([corners, corners + rng.uniform(20, 36, (20, 2))], axis=1)
            boxes = np.concatenate([around, background]).astype(np.float32)
            store.put(ann.filename, Proposals.from_boxes(boxes), width=ann.width, height=ann.height,
                      stamp=FileStamp.of(split.image_path(ann)))
    return path


def _mean_iou_to_ground_truth(model, spec, data) -> tuple[float, float]:
    """Mean IoU with their ground truth of the stored proposals at IoU >= 0.5 (the regressed ones),
    before and after the exported model's regression for the ground truth's class."""
    split = load_dataset(data["train"])
    store = ProposalStore(data["train_store"], readonly=True)
    before, after = [], []
    for ann in split.annotations:
        gt = torch.as_tensor(ann.boxes)
        boxes = store[ann.filename].boxes
        boxes = boxes[box_iou(boxes, gt)[:, 0] >= 0.5]
        if not len(boxes):
            continue
        with torch.no_grad():
            out = model(warp_image_regions(image_to_tensor(read_image(split.image_path(ann))), boxes, spec.input_size, spec.context_pad))
        label = split.classes.index(ann.labels[0]) + 1
        moved = decode_deltas(out.deltas, boxes).view(len(boxes), -1, 4)[:, label]
        before.append(box_iou(boxes, gt)[:, 0])
        after.append(box_iou(moved, gt)[:, 0])
    return float(torch.cat(before).mean()), float(torch.cat(after).mean())


def test_box_regression_trained_jointly_moves_proposals_towards_their_ground_truth(data, tmp_path) -> None:
    loose = {**data, "train_store": _loose_proposals(data, tmp_path / "loose.db")}
    cfg = _config(loose, tmp_path, max_epochs=4, model={"bbox_reg": True}, data={"fg_fraction": 0.5, "bbox_iou": 0.5})
    spec, model = load_region_classifier(train_regions(cfg))
    assert spec.bbox_reg and "val_bbox_loss" in spec.metadata["metrics"]
    before, after = _mean_iou_to_ground_truth(model, spec, loose)
    print(f"mean IoU of regressed proposals with their ground truth: {before:.3f} before, {after:.3f} after")
    assert after > before + 0.04  # measured: 0.596 -> 0.669 (16 steps)


def test_a_mirrored_crops_horizontal_offset_changes_sign() -> None:
    crops = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    targets = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 2.0, 3.0, 4.0]])
    flipped, moved = mirror_regions(crops, targets, torch.tensor([True, False]))
    assert torch.equal(flipped[0], crops[0].flip(-1)) and torch.equal(flipped[1], crops[1])
    assert moved.tolist() == [[-1.0, 2.0, 3.0, 4.0], [-1.0, 2.0, 3.0, 4.0]]
