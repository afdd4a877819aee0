"""``incdet train multibox`` on a tiny generated dataset, continuing from a checkpoint, and the shipped network."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from incdet.cli import main
from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.io import write_image
from incdet.multibox.multibox_file import load_multibox
from incdet.multibox.propose import predict_images
from incdet.weights import DEMO_MULTIBOX

# Each image holds one bright square in one of four places (96x72 images).
# 8 epochs found the square with one lucky shuffling seed only; 20 with each of seeds 0-2.
EPOCHS = 20
PLACES = np.array([[8, 8, 40, 32], [56, 8, 88, 32], [8, 40, 40, 64], [56, 40, 88, 64]], np.float32)


def write_split(folder: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = rng.integers(0, 60, (72, 96, 3)).astype(np.uint8)
        box = PLACES[i % 4] + rng.integers(-4, 5, 4)
        x1, y1, x2, y2 = box.astype(int)
        image[y1:y2, x1:x2] = (230, 200, 40)
        write_image(folder / "images" / f"{i:03d}.png", image)
        write_voc_xml(folder / "annotations" / f"{i:03d}.xml", Annotation(f"{i:03d}.png", 96, 72, box[None], ["square"]))


def config(tmp_path: Path, **overrides: object) -> Path:
    cfg = {
        "data": {"train": str(tmp_path / "data" / "train" / "annotations"), "val": str(tmp_path / "data" / "val" / "annotations"),
                 "batch_size": 8},
        "model": {"num_priors": 4, "input_size": 64, "width": 0.125, "head_channels": 8, "hidden": 16, "dropout": 0.0},
        "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0, "lr_decay": 1.0, "ema_decay": None},
        "max_epochs": EPOCHS,
        "out_dir": str(tmp_path / "run"),
        "export": str(tmp_path / "run" / "multibox.pt"),
        "trainer": {"log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False},
        **overrides,
    }
    path = tmp_path / f"config{len(list(tmp_path.glob('config*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("multibox_train")
    write_split(tmp_path / "data" / "train", 16, seed=0)
    write_split(tmp_path / "data" / "val", 4, seed=1)
    assert main(["train", "multibox", "--config", str(config(tmp_path))]) == 0
    return tmp_path


def test_short_training_lowers_the_loss(trained: Path) -> None:
    rows = list(csv.DictReader(open(trained / "run" / "logs" / "version_0" / "metrics.csv")))
    train = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert len(train) == 2 * EPOCHS  # 2 batches an epoch
    assert np.mean(train[-4:]) < 0.6 * np.mean(train[:4])


def test_exported_network_keeps_the_clustered_priors_and_finds_the_square(trained: Path) -> None:
    spec, model = load_multibox(trained / "run" / "multibox.pt")
    assert spec.num_priors == 4 and spec.input_size == 64 and spec.metadata["train_images"] == 16
    # Priors come from the training boxes (and their mirror images): every place has a prior near it.
    priors = model.priors.numpy() * [96, 72, 96, 72]
    assert np.abs(priors[:, None] - PLACES[None]).max(axis=2).min(axis=0).max() < 8
    image = np.zeros((72, 96, 3), np.uint8)
    image[40:64, 56:88] = (230, 200, 40)
    boxes, scores = predict_images(model, [image], top_n=1)[0]
    assert np.abs(boxes[0] - PLACES[3]).max() < 10


def test_continuing_from_a_checkpoint_that_disagrees_with_the_config_is_refused(trained: Path, capsys) -> None:
    checkpoint = str(trained / "run" / "multibox.pt")
    model = {"num_priors": 6, "input_size": 96, "width": 0.125, "head_channels": 8, "hidden": 16}
    assert main(["train", "multibox", "--config", str(config(trained, init_checkpoint=checkpoint, model=model, out_dir=str(trained / "other")))]) == 2
    err = capsys.readouterr().err
    assert "multibox.pt: MultiBox checkpoint does not match the config: it has priors 4 (config: 6), input size 64 (config: 96)" in err


def test_too_many_priors_for_the_training_boxes_is_a_clear_error(trained: Path, capsys) -> None:
    model = {"num_priors": 50, "input_size": 64, "width": 0.125, "head_channels": 8, "hidden": 16}
    assert main(["train", "multibox", "--config", str(config(trained, model=model, out_dir=str(trained / "other")))]) == 2
    assert "into 50 priors" in capsys.readouterr().err


def test_a_rerun_is_refused_and_resume_continues_the_run(trained: Path, capsys) -> None:
    assert main(["train", "multibox", "--config", str(config(trained))]) == 2
    assert f"{trained / 'run'}: already holds a training run (checkpoints/last.ckpt); set resume: true" in capsys.readouterr().err
    assert main(["train", "multibox", "--config", str(config(trained, resume=True, max_epochs=EPOCHS + 1))]) == 0
    spec, _ = load_multibox(trained / "run" / "multibox.pt")
    assert spec.metadata["epochs"] == EPOCHS + 1
    assert sorted(p.name for p in (trained / "run" / "checkpoints").iterdir()) == [f"epoch={EPOCHS}-step={2 * EPOCHS + 2}.ckpt", "last.ckpt"]
    rows = list(csv.DictReader(open(trained / "run" / "logs" / "version_1" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows if r.get("train_loss")] == [EPOCHS, EPOCHS]  # only the one new epoch was trained


def test_the_shipped_demo_network_loads_and_proposes_boxes() -> None:
    spec, model = load_multibox(DEMO_MULTIBOX)
    assert DEMO_MULTIBOX.stat().st_size < 4 * 2**20
    import skimage.data

    image = cv2.resize(skimage.data.chelsea(), (256, 192))
    boxes, scores = predict_images(model, [image])[0]
    assert 0 < len(boxes) <= spec.num_priors and boxes.dtype == np.float32
    assert (boxes >= 0).all() and (boxes[:, 2] <= 256).all() and (boxes[:, 3] <= 192).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all() and (np.diff(scores) <= 0).all()



def test_unreadable_training_images_are_skipped_and_reported(tmp_path: Path, caplog) -> None:
    from incdet.data.voc import read_voc_xml
    from incdet.train.multibox.data import load_split

    write_split(tmp_path, 2, seed=0)
    (tmp_path / "images" / "001.png").write_bytes(b"not an image")
    table = load_split(tmp_path / "annotations", None, 64)
    assert len(table) == 1 and table.images.shape == (1, 3, 64, 64)
    expected = read_voc_xml(tmp_path / "annotations" / "000.xml").boxes / [96, 72, 96, 72]
    np.testing.assert_allclose(table.boxes[0], expected, rtol=1e-6)
    assert f"skipped {tmp_path / 'images' / '001.png'}: not a readable image" in caplog.text
