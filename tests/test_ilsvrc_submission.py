"""The devkit submission format: written from COCO results, read back by ``incdet eval``, and
checked against a port of the ILSVRC2014 devkit's ``eval_detection.m`` + ``VOCap.m`` that reads
the same submission file and the raw XML itself (1-based image ids, inclusive boxes, stable sorts,
MATLAB's NaN rules)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_ilsvrc import (
    BIRD,
    DOG,
    PERSON,
    VAL,
    list_dir,
    val_folders,
    write_release,
)

from incdet.cli import main
from incdet.data.dataset import load_dataset
from incdet.data.ilsvrc_classes import det_synsets
from incdet.evaluate import evaluate_detections
from incdet.evaluate.evaluator import evaluate_detection_arrays
from incdet.evaluate.submission import is_submission_file, read_submission
from incdet.postprocess.submission import format_submission
from incdet.structures import SkipReport

# --- eval_detection.m, loop for loop --------------------------------------------------------

def _vocap(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.fmax(mpre[i], mpre[i + 1])  # MATLAB's max ignores NaN
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1  # NaN ~= x is true in MATLAB too
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def eval_detection_port(pred_file: Path, gtruth_dir: Path, eval_file: Path, blacklist_file: Path | None) -> list[float]:
    """ap(1..num_classes) as eval_detection.m returns it; num_classes = the highest class with an object."""
    import xml.etree.ElementTree as ET

    hash_ = {s.wnid: s.index for s in det_synsets()}
    names, gt_ids = zip(*[(a, int(b)) for a, b in (line.split() for line in eval_file.read_text().splitlines())])
    gt_labels, gt_boxes, gt_thr, num_pos = [], [], [], [0] * 0
    for name in names:
        objs = ET.parse(gtruth_dir / f"{name}.xml").getroot().findall("object")
        labels = [hash_[o.findtext("name")] for o in objs]
        boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objs]
        for c in labels:
            num_pos += [0] * max(0, c - len(num_pos))
            num_pos[c - 1] += 1
        w = [b[3] - b[1] + 1 for b in boxes]  # the devkit's "gt_w" is the height, "gt_h" the width
        h = [b[2] - b[0] + 1 for b in boxes]
        gt_labels.append(labels), gt_boxes.append(boxes)
        gt_thr.append([min(0.5, a * b / ((a + 10) * (b + 10))) for a, b in zip(w, h)])
    bl = [(int(a), hash_[b]) for a, b in (line.split() for line in blacklist_file.read_text().splitlines())] \
        if blacklist_file else []
    pred = np.array([[float(v) for v in line.split()] for line in pred_file.read_text().splitlines()]).reshape(-1, 7)
    order = np.argsort(pred[:, 0], kind="stable")  # [img_ids ind] = sort(img_ids)
    pred = pred[order]
    num_imgs = int(max(max(gt_ids), pred[:, 0].max()))
    cells = {i: pred[pred[:, 0] == i] for i in range(1, num_imgs + 1)}
    cells = {i: c[np.argsort(-c[:, 2], kind="stable")] for i, c in cells.items()}  # sort(confs, 'descend')
    tp_cell, fp_cell = {}, {}
    for i, img in enumerate(gt_ids):
        labels, boxes, thr = gt_labels[i], gt_boxes[i], gt_thr[i]
        detected = [False] * len(labels)
        black = [c for b, c in bl if b == img]
        dets = cells[img]
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for j, (_, c, _, *bb) in enumerate(dets.tolist()):
            if c in black:
                continue  # just ignore this detection
            ovmax, kmax = -math.inf, -1
            for k, bg in enumerate(boxes):
                if labels[k] != c or detected[k]:
                    continue
                iw = min(bb[2], bg[2]) - max(bb[0], bg[0]) + 1
                ih = min(bb[3], bg[3]) - max(bb[1], bg[1]) + 1
                if iw > 0 and ih > 0:
                    ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bg[2] - bg[0] + 1) * (bg[3] - bg[1] + 1) - iw * ih
                    ov = iw * ih / ua
                    if ov >= thr[k] and ov > ovmax:
                        ovmax, kmax = ov, k
            if kmax >= 0:
                tp[j], detected[kmax] = 1, True
            else:
                fp[j] = 1
        tp_cell[img], fp_cell[img] = tp, fp
        for c in labels:
            if c in black:
                num_pos[c - 1] -= 1
    tp_all = np.concatenate([tp_cell.get(i, np.zeros(0)) for i in range(1, num_imgs + 1)])
    fp_all = np.concatenate([fp_cell.get(i, np.zeros(0)) for i in range(1, num_imgs + 1)])
    labels = np.concatenate([cells[i][:, 1] for i in range(1, num_imgs + 1)])
    confs = np.concatenate([cells[i][:, 2] for i in range(1, num_imgs + 1)])
    if len(tp_all) != len(confs):
        raise IndexError("Index exceeds matrix dimensions")  # tp_all(ind) in MATLAB
    ind = np.argsort(-confs, kind="stable")
    tp_all, fp_all, labels = tp_all[ind], fp_all[ind], labels[ind]
    aps = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in range(1, len(num_pos) + 1):
            tp, fp = np.cumsum(tp_all[labels == c]), np.cumsum(fp_all[labels == c])
            aps.append(_vocap(tp / num_pos[c - 1], tp / (fp + tp)))
    return aps


# --- a submission on the fixture releases ---------------------------------------------------

# (image_index, DET_ID, confidence, inclusive xmin, ymin, xmax, ymax) on VAL
PREDS = [(1, 26, 0.9, 12, 20, 109, 71), (1, 26, 0.8, 10, 20, 109, 69),  # TP, then a duplicate: FP
         (1, 124, 0.7, 199, 199, 206, 206),  # 5x5 person: IoU 25/64 = 0.39 >= its threshold 0.111
         (2, 58, 0.95, 0, 0, 199, 299),  # the blacklisted pair: ignored
         (2, 26, 0.6, 250, 40, 300, 139),  # IoU 0.51
         (1, 26, 0.6, 300, 300, 350, 350),  # FP, same score as the TP above: ranked first (image 1 < 2)
         (3, 26, 0.85, 0, 0, 50, 50),  # image without objects: FP
         (4, 58, 0.5, 301, 101, 499, 331), (4, 58, 0.5, 290, 90, 480, 320),  # tie in score within an image
         (4, 124, 0.4, 0, 0, 10, 10), (1, 26, 0.5, 0.5, 0.25, 30.75, 40.5),  # tie across images; fractions
         (3, 1, 0.3, 1, 1, 20, 20)]  # accordion (DET_ID 1): a class without ground truth, with a detection


def write_submission_text(path: Path, preds: list) -> Path:
    path.write_text("".join(f"{i} {c} {s} {x1} {y1} {x2} {y2}\n" for i, c, s, x1, y1, x2, y2 in preds))
    return path


def coco_records(preds: list) -> list[dict]:
    names = [f"{n}.JPEG" for n, *_ in VAL]
    return [{"file_name": names[i - 1], "category_id": c, "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1], "score": s}
            for i, c, s, x1, y1, x2, y2 in preds]


def evaluate_file(root: Path, path: Path):
    ds = load_dataset(root)
    report = SkipReport()
    dets, lines = read_submission(path, [a.filename for a in ds.annotations], ds.image_numbers, ds.classes,
                                  ds.category_ids, report)
    return evaluate_detection_arrays(ds.annotations, dets, lines, ds.classes, ignored=ds.ignored, report=report)


@pytest.mark.parametrize("name", ["2015", "2014"])
def test_submission_is_evaluated_as_eval_detection_m_does(tmp_path: Path, name: str):
    root = write_release(tmp_path, name)
    sub = write_submission_text(tmp_path / "dets.txt", PREDS)
    blacklist = next(tmp_path.rglob("*det_validation_blacklist.txt"))
    expected = eval_detection_port(sub, val_folders(name, root)[1], list_dir(name, root) / "val.txt", blacklist)
    result = evaluate_file(root, sub)
    assert len(expected) == 124  # the devkit's ap() stops at the highest class with an object (person)
    for c, (mine, theirs) in enumerate(zip([r.ap for r in result.classes], expected), 1):
        if result.classes[c - 1].num_gt:
            assert mine == pytest.approx(theirs, abs=1e-12), c
        else:  # on purpose: incdet leaves classes without objects out; the devkit gives NaN or 0
            assert math.isnan(mine) and (math.isnan(theirs) if c == 1 else theirs == 0.0), c
    assert result.detection_status.tolist() == [1, 0, 1, -1, 1, 0, 0, 1, 0, 0, 0, 0]
    # the COCO-results path gives the same, detection for detection
    ds = load_dataset(root)
    same = evaluate_detections(ds.annotations, coco_records(PREDS), ds.classes, ignored=ds.ignored,
                               category_ids=ds.category_ids)
    np.testing.assert_allclose([r.ap for r in same.classes], [r.ap for r in result.classes], atol=1e-12)
    assert same.detection_status.tolist() == result.detection_status.tolist()


def random_records(seed: int) -> list[dict]:
    """Perturbed ground truth and random boxes on VAL, scores with one decimal (many ties)."""
    rng = np.random.default_rng(seed)
    names = {BIRD: 26, DOG: 58, PERSON: 124}
    records = []
    for name, w, h, objects in VAL:
        for wnid, x1, y1, x2, y2 in objects * 3:
            dx = rng.normal(0, 4, 4)
            records.append({"file_name": f"{name}.JPEG", "category_id": names[wnid], "score": round(rng.uniform(), 1),
                            "bbox": [x1 + dx[0], y1 + dx[1], x2 - x1 + 1 + dx[2], y2 - y1 + 1 + dx[3]]})
        for _ in range(4):
            x, y = rng.uniform(0, w - 30), rng.uniform(0, h - 30)
            records.append({"file_name": f"{name}.JPEG", "category_name": list(names)[rng.integers(3)],
                            "score": round(rng.uniform(), 1), "bbox": [x, y, rng.uniform(2, 60), rng.uniform(2, 60)]})
    records.append({"file_name": "not_in_val.JPEG", "category_id": 26, "score": 0.5, "bbox": [0, 0, 5, 5]})
    return records


def test_round_trip_coco_results_to_submission_to_eval(tmp_path: Path, capsys):
    aps = {}
    for name in ("2015", "2014"):
        root = write_release(tmp_path / name, name)
        dets = tmp_path / "dets.json"
        dets.write_text(json.dumps(random_records(0)))
        sub = tmp_path / name / "dets.txt"
        assert main(["export-submission", "--dets", str(dets), "--gt", str(root), "--out", str(sub)]) == 0
        out = capsys.readouterr()
        assert f"wrote {len(random_records(0)) - 1} lines to {sub}" in out.out and "not_in_val.JPEG" in out.err
        for path in (dets, sub):
            report = tmp_path / name / f"{path.suffix[1:]}.json"
            assert main(["eval", "--gt", str(root), "--dets", str(path), "--json", str(report)]) == 0
            aps[name, path.suffix] = json.loads(report.read_text())
        port = eval_detection_port(sub, val_folders(name, root)[1], list_dir(name, root) / "val.txt",
                                   next((tmp_path / name).rglob("*det_validation_blacklist.txt")))
        for c in aps[name, ".txt"]["classes"]:
            if c["num_gt"]:
                assert c["ap"] == pytest.approx(port[c["index"] - 1], abs=1e-6)
    first = aps["2015", ".json"]
    assert 0.2 < first["mean_ap"] < 0.95  # a real mix of hits and misses
    for key, other in aps.items():
        assert other["mean_ap"] == first["mean_ap"], key
        assert [c["ap"] for c in other["classes"]] == [c["ap"] for c in first["classes"]], key
        assert [c["num_tp"] for c in other["classes"]] == [c["num_tp"] for c in first["classes"]], key


def test_export_writes_the_devkit_frame_in_record_order(tmp_path: Path, capsys):
    root = write_release(tmp_path, "2014")
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([
        {"file_name": "ILSVRC2013_val_00000004.JPEG", "category_name": DOG, "bbox": [300, 100, 201, 233], "score": 0.5},
        {"file_name": "ILSVRC2012_val_00000001.JPEG", "category_id": 26, "bbox": [10, 20, 100, 50], "score": 0.9},
        {"file_name": "ILSVRC2012_val_00000001.JPEG", "category_id": 26, "bbox": [0.5, 0.25, 30.25, 40.25],
         "score": 0.123456789},
        {"file_name": "ILSVRC2012_val_00000003.JPEG", "category_id": 999, "bbox": [0, 0, 1, 1], "score": 0.1}]))
    out = tmp_path / "sub.txt"
    assert main(["export-submission", "--dets", str(dets), "--gt", str(root / "ILSVRC2014_devkit"),
                 "--out", str(out)]) == 0
    assert out.read_text() == ("4 58 0.5 300 100 500 332\n"  # [x, y, w, h] -> x, y, x + w - 1, y + h - 1
                               "1 26 0.9 10 20 109 69\n"
                               "1 26 0.123456789 0.5 0.25 29.75 39.5\n")
    assert "detection #3 (ILSVRC2012_val_00000003.JPEG): category_id 999 is not a known class" in capsys.readouterr().err
    assert format_submission([7], [1], [1e-05], [[0, 0, 1, 1]]) == "7 1 1e-05 0 0 0 0\n"  # a 1-pixel box


def test_bad_submission_lines_are_skipped_with_file_and_line(tmp_path: Path, capsys):
    root = write_release(tmp_path, "2014")
    sub = tmp_path / "dets.txt"
    sub.write_text("1 26 0.9 10 20 109 69\n"   # good: bird found
                   "1 26 0.9 10 20 109\n"       # 6 fields
                   "1 26 high 10 20 109 69\n"   # non-numeric confidence
                   "1.5 26 0.9 10 20 109 69\n"  # non-integer image_index
                   "1 0 0.9 10 20 109 69\n"     # DET_ID 0
                   "1 201 0.9 10 20 109 69\n"   # DET_ID 201
                   "1 26 nan 10 20 109 69\n"    # non-finite
                   "1 26 0.9 10 20 5 69\n"      # xmax < xmin - 1
                   "\n"
                   "99 26 0.9 10 20 109 69\n99 58 0.8 1 1 5 5\n")  # no image 99 in val.txt
    with pytest.raises(IndexError):  # the devkit itself stops on detections of images it does not evaluate
        eval_detection_port(write_submission_text(tmp_path / "d99.txt", PREDS + [(99, 26, 0.9, 10, 20, 109, 69)]),
                            root / "ILSVRC2013_DET_bbox_val", list_dir("2014", root) / "val.txt", None)
    result = evaluate_file(root, sub)
    messages = [s.message for s in result.skipped.items]
    expected = {2: "expected 7 fields (image_index ILSVRC2014_DET_ID confidence xmin ymin xmax ymax), got 6",
                3: "image_index and DET_ID must be integers, the other fields numbers",
                4: "image_index and DET_ID must be integers, the other fields numbers",
                5: "ILSVRC2014_DET_ID 0 is not one of 1..200", 6: "ILSVRC2014_DET_ID 201 is not one of 1..200",
                7: "non-finite confidence or coordinate",
                8: "xmax < xmin - 1 or ymax < ymin - 1 (negative width or height)"}
    for line, problem in expected.items():
        assert sum(m.startswith(f"{sub}:{line}: {problem}: '") for m in messages) == 1, line
    assert f"{sub}: 2 detection(s) (line 10, ...) for image_index 99, which is not in the image set" in messages
    assert result.skipped.counts() == {"line": 7, "detection": 2}
    assert result.detection_status.tolist() == [1] + [-2] * 10 and len(result.detection_status) == 11
    bird = next(c for c in result.classes if c.name == BIRD)
    assert (bird.num_dets, bird.num_tp) == (1, 1)
    # the command evaluates the good line, lists the rest, exits 0; with no good line it exits 1
    assert main(["eval", "--gt", str(root), "--dets", str(sub)]) == 0
    err = capsys.readouterr().err
    assert f"skipped: {sub}:6: ILSVRC2014_DET_ID 201 is not one of 1..200" in err
    sub.write_text("1 26 0.9 10 20 109\n")
    assert main(["eval", "--gt", str(root), "--dets", str(sub)]) == 1


def test_submission_needs_ilsvrc_image_numbers(tmp_path: Path, capsys):
    root = write_release(tmp_path, "2015")
    sub = write_submission_text(tmp_path / "dets.txt", PREDS)
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height>"
                               "</size></annotation>")
    assert main(["eval", "--gt", str(voc), "--dets", str(sub)]) == 2
    assert "a submission file needs ILSVRC-DET ground truth" in capsys.readouterr().err
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(coco_records(PREDS)))
    sub_folder = root / "Annotations/DET/val/sub"  # an annotation sub-folder: no image set, no numbers
    sub_folder.mkdir()
    (root / "Annotations/DET/val/ILSVRC2012_val_00000001.xml").rename(sub_folder / "ILSVRC2012_val_00000001.xml")
    assert main(["export-submission", "--dets", str(dets), "--gt", str(sub_folder), "--out", str(tmp_path / "o.txt")]) == 2
    assert "not an ILSVRC-DET image set with image numbers" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()


def test_detections_format_by_suffix_or_content(tmp_path: Path):
    for name, text, is_sub in [("a.txt", "[]", True), ("a.json", "1 2 3", False), ("a.dets", " \n[{}]", False),
                               ("a.dets", "1 26 0.9 1 2 3 4\n", True), ("a", "{", False)]:
        (tmp_path / name).write_text(text)
        assert is_submission_file(tmp_path / name) is is_sub, name
