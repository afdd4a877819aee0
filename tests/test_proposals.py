"""Selective-search proposals, their quality measures, their cache files and the ``propose`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data

from incdet.cli import main
from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.engine import Execution, propose_folder
from incdet.errors import InputError
from incdet.io import write_image
from incdet.proposals import (
    best_overlaps,
    coverage,
    load_proposals,
    mabo,
    recall_at,
    save_proposals,
    selective_search,
)
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import ProposalStore
from incdet.structures import ImageRecord

RECTS = np.array([[10, 15, 60, 70], [80, 20, 150, 55], [70, 70, 130, 110]], np.float32)


def rectangles_on_noise(seed: int = 0) -> np.ndarray:
    """A 160x120 image: grey noise with three solid coloured rectangles at RECTS."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, (120, 160, 3)).astype(np.uint8)
    for (x1, y1, x2, y2), colour in zip(RECTS.astype(int), [(220, 30, 30), (30, 200, 40), (40, 40, 230)]):
        image[y1:y2, x1:x2] = colour
    return image


@pytest.fixture(scope="module")
def synthetic_boxes() -> np.ndarray:
    return selective_search(rectangles_on_noise())


def test_proposals_cover_solid_rectangles(synthetic_boxes: np.ndarray) -> None:
    assert coverage([synthetic_boxes], [RECTS], 0.5) == 1.0
    assert best_overlaps([synthetic_boxes], [RECTS]).min() > 0.9


def test_boxes_are_clipped_large_enough_unique_and_float32(synthetic_boxes: np.ndarray) -> None:
    boxes = synthetic_boxes
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 10
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    assert (boxes[:, 2:] - boxes[:, :2] >= 20).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_min_size_drops_small_boxes() -> None:
    boxes = selective_search(rectangles_on_noise(), min_size=45)
    assert len(boxes) and (boxes[:, 2:] - boxes[:, :2] >= 45).all()


def test_order_is_deterministic_for_a_seed_and_random_across_seeds(synthetic_boxes: np.ndarray) -> None:
    image = rectangles_on_noise()
    assert np.array_equal(selective_search(image, seed=0), synthetic_boxes)
    other = selective_search(image, seed=1)
    assert not np.array_equal(other, synthetic_boxes)
    as_set = lambda b: {tuple(row) for row in b.tolist()}  # noqa: E731
    assert as_set(other) == as_set(synthetic_boxes)


def test_wide_images_are_searched_downscaled_and_boxes_scaled_back() -> None:
    image = skimage.data.chelsea()  # 451 x 300
    height, width = image.shape[:2]
    boxes = selective_search(image, search_width=200)
    # The top of the hierarchy is the whole image, in original-image coordinates.
    assert np.abs(boxes - np.array([0, 0, width, height], np.float32)).max(axis=1).min() < 1e-3
    assert boxes[:, 2].max() <= width and boxes[:, 3].max() <= height


def test_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError):
        selective_search(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError):
        selective_search(np.zeros((20, 20, 3), np.float32))


# --- quality measures, against hand computations ---

GT = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[0, 0, 4, 4]], np.float32)]
PROPS = [
    # image 0: IoU with gt0 = 50/100 = 0.5 (half of it), then an exact hit on gt1, then IoU 25/100 with gt0
    np.array([[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32),
    # image 1: IoU = 4/16 = 0.25
    np.array([[0, 0, 2, 2]], np.float32),
]


def test_best_overlaps_and_coverage_by_hand() -> None:
    np.testing.assert_allclose(best_overlaps(PROPS, GT), [0.5, 1.0, 0.25])
    np.testing.assert_allclose(best_overlaps(PROPS, GT, top_n=1), [0.5, 0.0, 0.25])
    assert coverage(PROPS, GT, 0.5) == pytest.approx(2 / 3)
    assert coverage(PROPS, GT, 0.6) == pytest.approx(1 / 3)
    assert coverage(PROPS, GT, 0.5, top_n=1) == pytest.approx(1 / 3)


def test_image_without_proposals_counts_as_missed() -> None:
    assert coverage([np.zeros((0, 4), np.float32)], [GT[1]], 0.5) == 0.0


def test_mabo_by_hand() -> None:
    assert mabo(PROPS, GT) == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    # per class: cat = mean(0.5, 0.25), dog = 1.0; then the mean over the two classes
    assert mabo(PROPS, GT, [["cat", "dog"], ["cat"]]) == pytest.approx((0.375 + 1.0) / 2)


def test_recall_as_a_function_of_proposal_count_by_hand() -> None:
    np.testing.assert_allclose(recall_at(PROPS, GT, 0.5, [0, 1, 2, 3]), [0, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(recall_at(PROPS, GT, 0.2, [1, 3]), [2 / 3, 1.0])


def test_quality_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError):
        coverage(PROPS, GT[:1])
    with pytest.raises(ValueError):
        coverage([np.zeros((0, 4))], [np.zeros((0, 4))])


# --- proposal files ---

@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_store_round_trips(tmp_path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    xy = rng.random((7, 2), dtype=np.float32) * 100
    proposals = {
        "0001.jpg": np.concatenate([xy, xy + rng.random((7, 2), dtype=np.float32) * 50 + 1], axis=1),
        "0002.png": np.zeros((0, 4), np.float32),
    }
    path = tmp_path / f"props{suffix}"
    save_proposals(path, proposals)
    loaded = load_proposals(path)
    assert list(loaded) == list(proposals)
    for name, boxes in proposals.items():
        assert loaded[name].dtype == np.float32 and loaded[name].shape == boxes.shape
        np.testing.assert_array_equal(loaded[name], boxes)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.npz", b"not a zip file"),
        ("garbage.json", b"{not json"),
        ("list.json", b"[[0, 0, 1, 1]]"),
        ("shape.json", b'{"a.jpg": [[0, 0, 1]]}'),
        ("text.json", b'{"a.jpg": [["x", 0, 1, 1]]}'),
        ("inverted.json", b'{"a.jpg": [[5, 0, 1, 1]]}'),
    ],
)
def test_malformed_proposal_files_raise_input_error(tmp_path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=name):
        load_proposals(path)


def test_unknown_suffix_and_missing_file_raise_input_error(tmp_path) -> None:
    with pytest.raises(InputError):
        save_proposals(tmp_path / "p.txt", {})
    with pytest.raises(InputError):
        load_proposals(tmp_path / "missing.npz")


# --- batches and the command ---

@pytest.fixture()
def image_folder(tmp_path):
    folder = tmp_path / "images"
    write_image(folder / "a.png", rectangles_on_noise(0))
    write_image(folder / "b.png", rectangles_on_noise(1))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    return folder


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_skips_and_reports_a_corrupt_image(image_folder, tmp_path, workers: int) -> None:
    paths = sorted(image_folder.iterdir())
    done = []
    store = ProposalStore(tmp_path / "p.db", SearchSettings().to_dict())
    records = [ImageRecord(p, p.name, i) for i, p in enumerate(paths)]
    skipped = propose_folder(records, store, execution=Execution(workers=workers), on_result=done.append)
    assert sorted(r.image.path for r in done) == paths
    assert sorted(store) == ["a.png", "b.png"]
    assert len(skipped) == 1 and skipped.messages()[0].startswith(f"{image_folder / 'broken.jpg'}: ")
    assert coverage([store["a.png"].boxes.numpy(), store["b.png"].boxes.numpy()], [RECTS, RECTS]) == 1.0


def test_propose_command_writes_file_and_reports_quality(image_folder, tmp_path, capsys) -> None:
    annotations = tmp_path / "annotations"
    for stem in ("a", "b"):
        write_voc_xml(annotations / f"{stem}.xml", Annotation(f"{stem}.png", 160, 120, RECTS, ["x", "y", "z"]))
    out = tmp_path / "props.json"
    assert main(["propose", str(image_folder), "--out", str(out), "--workers", "1", "--gt", str(annotations)]) == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err
    assert str(out) in captured.out
    row = next(line for line in captured.out.splitlines() if line.startswith("| props.db |"))
    assert row.split("|")[3].strip() == "1.000"  # coverage@0.5 of the three rectangles in both images
    assert sorted(json.loads(out.read_text())) == ["a.png", "b.png"]


def test_propose_command_exits_1_when_nothing_is_processed(image_folder, tmp_path) -> None:
    out = tmp_path / "props.npz"
    assert main(["propose", str(image_folder / "broken.jpg"), "--out", str(out), "--workers", "1"]) == 1
    assert not out.exists()


def test_propose_command_keys_images_by_relative_path_and_refuses_clashing_keys(image_folder, tmp_path) -> None:
    other = tmp_path / "other"
    write_image(other / "a.png", rectangles_on_noise(2))
    assert main(["propose", str(image_folder), str(other), "--out", str(tmp_path / "p.npz")]) == 2
    write_image(image_folder / "sub" / "a.png", rectangles_on_noise(2))  # same name, another sub-folder: fine
    out = tmp_path / "p.json"
    assert main(["propose", str(image_folder), "--out", str(out), "--workers", "0"]) == 0
    assert sorted(json.loads(out.read_text())) == ["a.png", "b.png", "sub/a.png"]


def test_propose_reads_any_ground_truth_format_and_skips_what_it_cannot_read(image_folder, tmp_path, capsys) -> None:
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 160, "height": 120}],
            "categories": [{"id": 1, "name": "box"}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
                            for i, (x1, y1, x2, y2) in enumerate(RECTS.tolist())]}
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    out = tmp_path / "props.db"
    assert main(["propose", str(image_folder), "--out", str(out), "--workers", "0", "--gt", str(tmp_path / "gt.json")]) == 0
    text = capsys.readouterr().out
    assert "1 image(s) lack an annotation or boxes in some set; measured on the other 1" in text
    assert "ground truth: 3 boxes in 1 images" in text
    row = next(line for line in text.splitlines() if line.startswith("| props.db |"))
    assert row.split("|")[3].strip() == "1.000"

    annotations = tmp_path / "voc"
    write_voc_xml(annotations / "a.xml", Annotation("a.png", 160, 120, RECTS, ["x", "y", "z"]))
    (annotations / "b.xml").write_text("<annotation><filename>b.png</filename><size>broken")
    assert main(["propose", str(image_folder), "--out", str(out), "--workers", "0", "--gt", str(annotations)]) == 0
    captured = capsys.readouterr()
    assert "b.xml: malformed XML" in captured.err  # reported; the other annotation is measured, the store is kept
    assert "resuming: 2 of 3 images are in" in captured.out and "ground truth: 3 boxes in 1 images" in captured.out
