"""Classification data: ImageFolder, the ILSVRC-CLS layouts, the shipped digits, and the paper's augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat
from torchvision.transforms import InterpolationMode, v2

from incdet.data.classification import load_classification
from incdet.errors import InputError
from incdet.io import write_image
from incdet.train.backbone.config import AugmentConfig
from incdet.train.backbone.data import (
    CenterCropTransform,
    ImageDataset,
    TrainTransform,
    collate_readable,
)


def _image(path: Path, value: int) -> None:
    write_image(path, np.full((12, 16, 3), value, dtype=np.uint8))


def test_image_folder_with_a_given_class_list_and_an_unreadable_image(tmp_path: Path, caplog) -> None:
    for cls, n in (("cat", 2), ("dog", 1)):
        for i in range(n):
            _image(tmp_path / "train" / cls / f"{i}.png", 10 * i)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "val" / "dog").mkdir(parents=True)
    _image(tmp_path / "val" / "dog" / "a.png", 5)

    train = load_classification("folder", tmp_path, "train")
    assert train.classes == ["cat", "dog"] and train.labels.tolist() == [0, 0, 1, 1]
    val = load_classification("folder", tmp_path, "val", classes=["cat", "dog"])  # no cat folder: labels still follow train
    assert val.labels.tolist() == [1]

    dataset = ImageDataset(train, CenterCropTransform(8))
    batch = collate_readable([dataset[i] for i in range(len(dataset))])
    images, labels = batch
    assert images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 0, 1]
    assert "broken.jpg: not a readable image" in caplog.text
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(InputError, match="bird: class folder not in the class list"):
        load_classification("folder", tmp_path, "val", classes=["cat", "dog"])


def _ilsvrc_train(root: Path, wnids: list[str]) -> None:
    for i, wnid in enumerate(wnids):
        _image(root / "train" / wnid / f"{wnid}_1.JPEG", i)


def test_ilsvrc_devkit_layout(tmp_path: Path, capsys) -> None:
    wnids = ["n01440764", "n01443537", "n01484850"]
    _ilsvrc_train(tmp_path, wnids)
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    # meta.mat lists leaves by ILSVRC2012_ID (deliberately out of order here) and inner nodes with children.
    synsets = np.array([(2, wnids[1], "goldfish", 0), (1, wnids[0], "tench", 0), (1001, "n00001740", "entity", 5), (3, wnids[2], "shark", 0)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    savemat(devkit / "meta.mat", {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("3\n1\n")
    for number in (1, 2, 3):
        _image(tmp_path / "val" / f"ILSVRC2012_val_{number:08d}.JPEG", number)

    train = load_classification("ilsvrc", tmp_path, "train")
    assert train.classes == wnids and train.labels.tolist() == [0, 1, 2]
    val = load_classification("ilsvrc", tmp_path, "val", classes=train.classes)
    assert [p.name for p in val.paths] == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    assert val.labels.tolist() == [2, 0]
    assert [s.message for s in val.skipped.items] == [f"{tmp_path / 'val' / 'ILSVRC2012_val_00000003.JPEG'}: no ground-truth label"]

    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("3\n7\n")
    with pytest.raises(InputError, match=r"line 2: '7' is not an ILSVRC2012_ID in 1..3"):
        load_classification("ilsvrc", tmp_path, "val")


def test_ilsvrc_kaggle_layout(tmp_path: Path) -> None:
    wnids = ["n01440764", "n01443537"]
    cls_loc = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    for i, wnid in enumerate(wnids):
        _image(cls_loc / "train" / wnid / f"{wnid}_1.JPEG", i)
    _image(cls_loc / "val" / "ILSVRC2012_val_00000001.JPEG", 0)
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01443537 1 2 30 40 n01443537 5 6 7 8\n")
    val = load_classification("ilsvrc", tmp_path, "val")
    assert val.classes == wnids and val.labels.tolist() == [1]
    with pytest.raises(InputError, match="no validation ground truth"):
        load_classification("ilsvrc", tmp_path / "ILSVRC", "val")  # the Kaggle files sit above ILSVRC/
    with pytest.raises(InputError, match="not an ILSVRC-CLS root"):
        load_classification("ilsvrc", tmp_path / "ILSVRC" / "Data", "train")


def test_digits_ship_as_a_fixed_stratified_split() -> None:
    train, val = load_classification("digits", None, "train"), load_classification("digits", None, "val")
    assert len(train) + len(val) == 1797 and len(val) == 359
    assert train.classes == val.classes == [str(k) for k in range(10)]
    assert np.bincount(val.labels).min() >= 35  # every class in both splits
    assert train.pixels.shape[1:] == (8, 8, 3) and train.pixels.dtype == np.uint8 and train.pixels.max() == 255
    np.testing.assert_array_equal(load_classification("digits", None, "val").labels, val.labels)
    with pytest.raises(InputError, match="splits train and val"):
        load_classification("digits", None, "test")


def test_train_transform_follows_the_googlenet_sampling() -> None:
    aug = AugmentConfig()
    transform = TrainTransform(24, aug)
    choice, flip, jitter = transform.pipeline.transforms[:3]
    assert isinstance(choice, v2.RandomChoice) and isinstance(flip, v2.RandomHorizontalFlip) and isinstance(jitter, v2.ColorJitter)
    crops = choice.transforms
    assert [c.interpolation for c in crops] == [InterpolationMode.BILINEAR, InterpolationMode.BOX, InterpolationMode.NEAREST, InterpolationMode.BICUBIC]
    assert all(c.scale == (0.08, 1.0) and c.ratio == pytest.approx((0.75, 4 / 3)) for c in crops)
    assert choice.p == [0.25] * 4
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    outputs = torch.stack([transform(image) for _ in range(4)])
    assert outputs.shape == (4, 3, 24, 24) and outputs.dtype == torch.float32
    assert len({o.numpy().tobytes() for o in outputs}) == 4  # random crops differ

    plain = TrainTransform(24, AugmentConfig(random_interpolation=False, hflip=False, brightness=0, contrast=0, saturation=0))
    assert len(plain.pipeline.transforms[0].transforms) == 1 and len(plain.pipeline.transforms) == 4
