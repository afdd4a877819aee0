"""The demo dataset: deterministic, well-formed, split cleanly, and safe to write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import incdet.data.demo as demo
from incdet.cli import main
from incdet.data.voc import read_voc_xml
from incdet.errors import InputError
from incdet.io import read_image

COUNTS = {"train": 10, "val": 5, "test": 5}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    return root, demo.generate_demo(root, seed=0, counts=COUNTS)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(dataset, tmp_path):
    root, _ = dataset
    demo.generate_demo(tmp_path / "again", seed=0, counts=COUNTS)
    assert _files(tmp_path / "again") == _files(root)
    demo.generate_demo(tmp_path / "other", seed=1, counts=COUNTS)
    first, other = _files(root), _files(tmp_path / "other")
    images = [name for name in other if name.endswith(".jpg")]
    assert len(images) == sum(COUNTS.values())
    assert all(other[name] != first[name] for name in images)


def test_annotations_parse_back_with_boxes_inside_the_image(dataset):
    root, summary = dataset
    classes = (root / "classes.txt").read_text().split()
    assert classes == list(demo.CLASSES)
    for split, count in COUNTS.items():
        images = sorted((root / split / "images").glob("*.jpg"))
        xmls = sorted((root / split / "annotations").glob("*.xml"))
        assert [p.stem for p in images] == [p.stem for p in xmls] == [f"{i:04d}" for i in range(count)]
        objects = dict.fromkeys(classes, 0)
        for image_path, xml in zip(images, xmls):
            ann = read_voc_xml(xml)
            assert ann.filename == image_path.name
            assert read_image(image_path).shape == (ann.height, ann.width, 3) == (demo.IMAGE_HEIGHT, demo.IMAGE_WIDTH, 3)
            assert 1 <= len(ann.labels) <= demo.MAX_OBJECTS
            assert set(ann.labels) <= set(classes)
            x1, y1, x2, y2 = ann.boxes.T
            assert np.all((x1 >= 0) & (y1 >= 0) & (x2 <= ann.width) & (y2 <= ann.height))
            assert np.all((x2 - x1 >= 2) & (y2 - y1 >= 2))
            for label in ann.labels:
                objects[label] += 1
        assert summary["splits"][split] == {"images": count, "objects": objects}
        assert all(objects.values()), f"a class is missing from {split}"


def test_no_image_is_shared_across_splits(dataset):
    root, _ = dataset
    digests = {
        split: {hashlib.sha1(read_image(p).tobytes()).hexdigest() for p in (root / split / "images").glob("*.jpg")}
        for split in COUNTS
    }
    assert all(len(digests[s]) == COUNTS[s] for s in COUNTS)
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_coins_and_faces_in_val_test_are_instances_train_never_sees():
    train, held = demo.load_cutouts()
    for label in ("coin", "face"):
        assert train[label] and held[label]
        seen = {c.rgb.tobytes() for c in train[label]}
        assert not any(c.rgb.tobytes() in seen for c in held[label])


def test_box_is_the_tight_extent_of_the_pasted_object():
    """Paste a bright square on a black background: the box must frame exactly the bright pixels."""
    square = demo.Cutout("cat", np.full((40, 40, 3), 200, np.uint8), np.ones((40, 40), np.float32))
    pool = {label: [square] for label in demo.CLASSES}
    black = [np.zeros((300, 400, 3), np.uint8)]
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(100):
        image, boxes, labels = demo.make_image(rng, pool, black, "cat")
        if len(labels) == 1:
            ys, xs = np.nonzero(image.max(axis=2) > 40)
            assert boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            checked += 1
    assert checked >= 5


def test_a_later_object_may_hide_at_most_40_percent_of_an_earlier_one():
    owner = np.full((1, 10), -1)
    owner[0, :10] = 0  # object 0 covers 10 px
    cover = np.zeros((1, 10), bool)
    cover[0, :4] = True
    assert demo._visible_enough(owner, [10], cover)
    cover[0, :5] = True
    assert not demo._visible_enough(owner, [10], cover)


def test_refuses_a_foreign_non_empty_folder_unless_forced_and_never_deletes(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(InputError, match="not empty"):
        demo.generate_demo(tmp_path, counts={"train": 1, "val": 1, "test": 1})
    demo.generate_demo(tmp_path, counts={"train": 1, "val": 1, "test": 1}, force=True)
    assert (tmp_path / "mine.txt").read_text() == "user data"
    assert (tmp_path / "train" / "images" / "0000.jpg").is_file()


def test_rerun_in_place_removes_only_its_own_surplus_files(tmp_path):
    demo.generate_demo(tmp_path, counts={"train": 6, "val": 1, "test": 1})
    (tmp_path / "train" / "images" / "notes.txt").write_text("user data")
    demo.generate_demo(tmp_path, counts={"train": 3, "val": 1, "test": 1})
    assert sorted(p.name for p in (tmp_path / "train" / "images").iterdir()) == ["0000.jpg", "0001.jpg", "0002.jpg", "notes.txt"]
    assert len(list((tmp_path / "train" / "annotations").glob("*.xml"))) == 3


def test_cli_writes_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEFAULT_COUNTS", {"train": 5, "val": 5, "test": 5})
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "d") in out and "train" in out
    assert len(list((tmp_path / "d" / "test" / "annotations").glob("*.xml"))) == 5
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.jpg").write_bytes(b"")
    assert main(["data", "demo", "--out", str(tmp_path / "foreign")]) == 2
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--seed", "-1"]) == 2


def test_the_benchmark_split_is_held_out_and_leaves_the_others_unchanged(dataset, tmp_path, capsys):
    plain, _ = dataset
    root = tmp_path / "with_benchmark"
    summary = demo.generate_demo(root, seed=0, counts={**COUNTS, "benchmark": 6})
    assert summary["splits"]["benchmark"]["images"] == 6 and len(list((root / "benchmark" / "images").iterdir())) == 6
    for split in ("train", "val", "test"):  # the same files as a demo without it
        assert _files(root / split) == _files(plain / split)
    benchmark = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "benchmark" / "images").iterdir()}
    others = {hashlib.sha256(p.read_bytes()).hexdigest() for s in ("train", "val", "test") for p in (root / s / "images").iterdir()}
    assert not benchmark & others
    assert main(["data", "demo", "--out", str(tmp_path / "cli"), "--benchmark-images", "50"]) == 2
    assert "--benchmark-images must be at least 200" in capsys.readouterr().err
