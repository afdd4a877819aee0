"""``incdet eval`` end to end on VOC folders and COCO JSON, and its handling of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from incdet.cli import main
from incdet.data.dataset import load_dataset
from incdet.data.records import Annotation
from incdet.data.voc import read_voc_dir, write_voc_xml
from incdet.evaluate import evaluate_detections

CLASSES = ["cat", "dog", "owl"]


def record(file_name: str, cls: str, box: list[float], score: float, category_id: int | None = None) -> dict:
    x1, y1, x2, y2 = box
    rec = {"image_id": 0, "file_name": file_name, "category_name": cls, "bbox": [x1, y1, x2 - x1, y2 - y1],
           "score": score}
    if category_id is not None:
        rec["category_id"] = category_id
    return rec


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo layout: DIR/classes.txt and DIR/test/annotations/NNNN.xml."""
    root = tmp_path / "demo"
    (root / "test/annotations").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    anns = [Annotation("0000.jpg", 120, 100, [[10, 10, 60, 60], [70, 20, 110, 90]], ["cat", "dog"]),
            Annotation("0001.jpg", 120, 100, [[0, 0, 120, 100]], ["owl"]),
            Annotation("0002.jpg", 120, 100, [[30, 30, 35, 35], [50, 50, 90, 90]], ["cat", "cat"], [False, True])]
    for i, ann in enumerate(anns):
        write_voc_xml(root / f"test/annotations/{i:04d}.xml", ann)
    return root


def demo_records() -> list[dict]:
    return [record("0000.jpg", "cat", [10, 10, 60, 60], 0.9, 1), record("0000.jpg", "cat", [12, 12, 60, 60], 0.8, 1),
            record("0000.jpg", "dog", [70, 20, 110, 88], 0.7, 2), record("0001.jpg", "owl", [5, 5, 115, 95], 0.6, 3),
            record("0002.jpg", "cat", [29, 29, 37, 37], 0.5, 1), record("0002.jpg", "cat", [50, 50, 90, 90], 0.4, 1),
            record("0001.jpg", "cat", [0, 0, 30, 30], 0.3, 1)]


def write_dets(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_demo_layout_table_json_and_plots(demo: Path, tmp_path: Path, capsys):
    dets = write_dets(tmp_path / "dets.json", demo_records())
    out_json, plots = tmp_path / "out/eval.json", tmp_path / "out/pr"
    code = main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets),
                 "--json", str(out_json), "--plots", str(plots)])
    out = capsys.readouterr().out
    assert code == 0
    expected = evaluate_detections(read_voc_dir(demo / "test/annotations"), demo_records(), CLASSES)
    data = json.loads(out_json.read_text())
    assert data["mean_ap"] == pytest.approx(expected.mean_ap, abs=1e-6)
    assert [c["class"] for c in data["classes"]] == CLASSES
    assert [c["ap"] for c in data["classes"]] == pytest.approx([c.ap for c in expected.classes], abs=1e-6)
    # cat: 2 regular objects (the difficult one's detection is ignored): TP, FP, TP, FP
    assert data["classes"][0]["num_gt"] == 2 and data["classes"][0]["num_dets"] == 4
    assert f"mAP {100 * expected.mean_ap:.2f}%" in out and "classes: " + str(demo / "classes.txt") in out
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["001_cat.png", "002_dog.png", "003_owl.png"]
    assert all((plots / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not [p for p in out_json.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_table_sorting(demo: Path, tmp_path: Path, capsys):
    dets = write_dets(tmp_path / "dets.json", demo_records())
    rows = {}
    for key in ("ap", "name", "index"):
        assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets), "--sort", key]) == 0
        lines = capsys.readouterr().out.splitlines()
        rows[key] = [line.split()[1] for line in lines[2:5]]
    result = evaluate_detections(read_voc_dir(demo / "test/annotations"), demo_records(), CLASSES)
    assert rows["ap"] == [c.name for c in sorted(result.classes, key=lambda c: -c.ap)]
    assert rows["name"] == rows["index"] == CLASSES


def test_bad_detections_are_reported_and_skipped(demo: Path, tmp_path: Path, capsys):
    good = record("0000.jpg", "cat", [10, 10, 60, 60], 0.9)
    bad = [
        "not a record",                                                      # 1
        {**good, "score": float("nan")},                                     # 2 (written as NaN)
        {**good, "file_name": "9999.jpg"},                                   # 3
        {**good, "category_name": "yak"},                                    # 4
        {**good, "bbox": [10, 10, -5, 20]},                                  # 5: x2 < x1
        {k: v for k, v in good.items() if k != "file_name"},                 # 6
        {**good, "score": "high"},                                           # 7
        {**good, "bbox": [1, 2, 3]},                                         # 8
        {**good, "bbox": [10, 10, 500, 20]},                                 # 9: outside, kept with a warning
    ]
    dets = write_dets(tmp_path / "dets.json", [good] + bad)
    code = main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets), "--json",
                 str(tmp_path / "e.json")])
    err = capsys.readouterr().err
    assert code == 0
    for expected in ("detection #1: not a JSON object", "detection #2 (0000.jpg): score nan is not a finite number",
                     "1 detection(s) (#3) for image '9999.jpg', which is not in the ground truth",
                     "detection #4 (0000.jpg): category_name 'yak' is not a known class",
                     "detection #5 (0000.jpg): bbox [10.0, 10.0, -5.0, 20.0]: negative width",
                     "detection #6: missing or non-string 'file_name'",
                     "detection #7 (0000.jpg): score 'high' is not a finite number",
                     "detection #8 (0000.jpg): 'bbox' must be four numbers",
                     "detection #9 (0000.jpg): box [10.0, 10.0, 510.0, 30.0] extends outside the 120x100 image"):
        assert f"{dets}: {expected}" in err, expected
    assert "skipped 8 detections; 1 warning (items kept)" in err
    summary = json.loads((tmp_path / "e.json").read_text())["skipped"]
    assert summary["counts"] == {"detection": 8, "warning": 1}


def test_malformed_json_names_the_line(demo: Path, tmp_path: Path, capsys):
    dets = tmp_path / "dets.json"
    dets.write_text('[\n {"file_name": "0000.jpg",\n  "score": 0.5,,\n]\n')
    assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets)]) == 2
    assert f"{dets}: malformed JSON at line 3, column" in capsys.readouterr().err


def test_nothing_evaluable_exits_1(demo: Path, tmp_path: Path, capsys):
    dets = write_dets(tmp_path / "dets.json", [record("nope.jpg", "cat", [0, 0, 5, 5], 0.5)])
    assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets)]) == 1
    assert "none of the detections could be evaluated" in capsys.readouterr().err


def test_bad_annotation_files_are_skipped(demo: Path, tmp_path: Path, capsys):
    (demo / "test/annotations/0003.xml").write_text("<annotation><size><width>5</width>")
    dets = write_dets(tmp_path / "dets.json", demo_records())
    assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets)]) == 0
    captured = capsys.readouterr()
    assert "0003.xml: malformed XML" in captured.err and "skipped 1 annotation file" in captured.err
    assert "3 images" in captured.out


def test_classes_inferred_without_classes_txt(demo: Path, tmp_path: Path, capsys):
    (demo / "classes.txt").unlink()
    dets = write_dets(tmp_path / "dets.json", demo_records() + [record("0000.jpg", "yak", [0, 0, 9, 9], 0.2)])
    assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets), "--json",
                 str(tmp_path / "e.json")]) == 0
    data = json.loads((tmp_path / "e.json").read_text())
    assert [c["class"] for c in data["classes"]] == ["cat", "dog", "owl", "yak"]
    assert data["classes"][3]["ap"] is None and data["classes"][3]["num_dets"] == 1
    assert "labels found in the annotations" in capsys.readouterr().out


def test_class_list_option_and_small_object_switch(demo: Path, tmp_path: Path):
    (tmp_path / "two.txt").write_text("cat\ndog\n")
    dets = write_dets(tmp_path / "dets.json", demo_records())
    assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets), "--classes",
                 str(tmp_path / "two.txt"), "--json", str(tmp_path / "a.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert [c["class"] for c in a["classes"]] == ["cat", "dog"]
    assert any("class 'owl' is not in the class list" in i["message"] for i in a["skipped"]["items"])
    # the 5x5 cat in 0002.jpg: its detection (IoU 25/64) counts only with the small-object rule
    assert main(["eval", "--gt", str(demo / "test/annotations"), "--dets", str(dets), "--no-small-object-rule",
                 "--json", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["classes"][0]["num_tp"] == a["classes"][0]["num_tp"] - 1


def test_file_names_match_without_folder_and_extension(demo: Path):
    gts = read_voc_dir(demo / "test/annotations")
    recs = [record("images/0001.JPEG", "owl", [0, 0, 120, 100], 0.9)]
    result = evaluate_detections(gts, recs, CLASSES)
    assert result.detection_status.tolist() == [1] and result.classes[2].ap == 1.0


def test_numpy_values_from_in_process_callers(demo: Path):
    gts = read_voc_dir(demo / "test/annotations")
    rec = record("0001.jpg", "owl", [0, 0, 120, 100], 0.9)
    rec["bbox"], rec["score"] = [np.float32(v) for v in rec["bbox"]], np.float32(0.9)
    assert evaluate_detections(gts, [rec], CLASSES).detection_status.tolist() == [1]


def coco_file(tmp_path: Path) -> Path:
    data = {
        "images": [{"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
                   {"id": 11, "file_name": "b.jpg", "width": 100, "height": 80},
                   {"id": 12, "file_name": "a.jpg", "width": 100, "height": 80}],         # duplicate name
        "categories": [{"id": 7, "name": "zebra"}, {"id": 1, "name": "ant"}, {"id": 3, "name": "bee"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 10, 30, 20], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [50, 20, 40, 50], "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [0, 0, 60, 60], "iscrowd": 1},  # crowd
            {"id": 4, "image_id": 11, "category_id": 3, "bbox": [70, 10, 20, 20], "iscrowd": 0},
            {"id": 5, "image_id": 11, "category_id": 9, "bbox": [0, 0, 5, 5]},                  # unknown category
            {"id": 6, "image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5]},                  # unknown image
            {"id": 7, "image_id": 10, "category_id": 1, "bbox": [0, 0, "x", 5]},                # bad bbox
            {"id": 8, "image_id": 10, "category_id": 1, "bbox": [90, 70, 30, 30]}]}             # outside
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_ground_truth(tmp_path: Path, capsys):
    gt = coco_file(tmp_path)
    ds = load_dataset(gt)
    assert ds.format == "coco" and ds.classes == ["ant", "bee", "zebra"]  # category-id order
    assert ds.category_ids == {1: "ant", 3: "bee", 7: "zebra"}
    assert [a.filename for a in ds.annotations] == ["a.jpg", "b.jpg"]
    assert ds.annotations[1].difficult.tolist() == [True, False]
    messages = [s.message for s in ds.skipped.items]
    assert any("images[2]: image id 12 or file name 'a.jpg' used twice" in m for m in messages)
    assert any("annotations[4] (id 5): unknown category_id 9" in m for m in messages)
    assert any("annotations[5] (id 6): image_id 99" in m for m in messages)
    assert any("annotations[6] (id 7): 'bbox' must be four finite numbers" in m for m in messages)
    assert any("annotations[7] (id 8) on a.jpg: bbox [90, 70, 30, 30]: outside the 100x80 image" in m for m in messages)
    # detections that give only COCO's category_id
    dets = [{"file_name": "a.jpg", "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9},
            {"file_name": "a.jpg", "category_id": 7, "bbox": [50, 20, 40, 50], "score": 0.8},
            {"file_name": "b.jpg", "category_id": 3, "bbox": [0, 0, 60, 60], "score": 0.95},   # on the crowd
            {"file_name": "b.jpg", "category_id": 3, "bbox": [70, 10, 20, 20], "score": 0.7}]
    path = write_dets(tmp_path / "dets.json", dets)
    assert main(["eval", "--gt", str(gt), "--dets", str(path), "--json", str(tmp_path / "e.json")]) == 0
    data = json.loads((tmp_path / "e.json").read_text())
    assert [c["ap"] for c in data["classes"]] == [1.0, 1.0, 1.0] and data["mean_ap"] == 1.0
    assert data["classes"][1]["num_dets"] == 1  # the crowd detection is ignored


def test_unrecognised_ground_truth(tmp_path: Path, capsys):
    dets = write_dets(tmp_path / "dets.json", [])
    assert main(["eval", "--gt", str(tmp_path / "missing"), "--dets", str(dets)]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["eval", "--gt", str(tmp_path / "notes.txt"), "--dets", str(dets)]) == 2
    assert "not a recognised ground truth" in capsys.readouterr().err


def test_voc_year_folder_uses_the_image_set(tmp_path: Path):
    root = tmp_path / "VOC2007"
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for name in ("000001", "000002", "000003"):
        write_voc_xml(root / f"Annotations/{name}.xml", Annotation(f"{name}.jpg", 50, 40, [[0, 0, 10, 10]], ["cat"]))
    (root / "ImageSets/Main/test.txt").write_text("000001\n000003\n")
    ds = load_dataset(root, split="test")
    assert ds.format == "voc" and [a.filename for a in ds.annotations] == ["000001.jpg", "000003.jpg"]
    assert ds.image_dir == root / "JPEGImages"
    assert ds.image_path(ds.annotations[0]) == root / "JPEGImages/000001.jpg"
