"""The ILSVRC-DET reader on fixtures written in the devkit's exact layout and XML format, and
an evaluation on them checked against a port of eval_det.m that works on the raw XML numbers."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from incdet.data.dataset import load_dataset
from incdet.data.ilsvrc import det_synsets, locate, read_class_image_lists
from incdet.data.records import Annotation
from incdet.data.voc import read_voc_xml, write_voc_xml
from incdet.evaluate import evaluate_detections

BIRD, DOG, PERSON = "n01503061", "n02084071", "n00007846"


def xml_text(folder: str, filename: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> str:
    """An annotation as the devkit ships it (note the bndbox order xmin, xmax, ymin, ymax)."""
    body = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<xmax>{x2}</xmax>\n"
        f"\t\t\t<ymin>{y1}</ymin>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for name, x1, y1, x2, y2 in objects)
    return (f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{filename}</filename>\n\t<source>\n"
            f"\t\t<database>ILSVRC_2013</database>\n\t</source>\n\t<size>\n\t\t<width>{width}</width>\n"
            f"\t\t<height>{height}</height>\n\t</size>\n{body}</annotation>\n")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def jpeg(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path, "JPEG")


# val images: (name, width, height, objects as inclusive 0-based xmin, ymin, xmax, ymax)
VAL = [
    ("ILSVRC2012_val_00000001", 500, 375, [(BIRD, 10, 20, 109, 69), (PERSON, 200, 200, 204, 204)]),
    ("ILSVRC2012_val_00000002", 400, 300, [(DOG, 0, 0, 199, 299), (BIRD, 250, 40, 349, 139)]),
    ("ILSVRC2012_val_00000003", 320, 240, []),  # an image without objects
    ("ILSVRC2013_val_00000004", 500, 333, [(DOG, 300, 100, 500, 332)]),  # xmax == width: the devkit quirk
]


@pytest.fixture
def devkit(tmp_path: Path) -> Path:
    root = tmp_path / "ILSVRC2014"
    for name, w, h, objects in VAL:
        write(root / "Annotations/DET/val" / f"{name}.xml", xml_text("ILSVRC2013_val", name, w, h, objects))
        jpeg(root / "Data/DET/val" / f"{name}.JPEG", w, h)
    write(root / "ImageSets/DET/val.txt", "".join(f"{name} {i}\n" for i, (name, *_) in enumerate(VAL, 1)))
    write(root / "devkit/data/ILSVRC2014_det_validation_blacklist.txt", f"2 {DOG}\n")
    # train: a positive with its XML, a negative image without one (as the devkit ships negatives)
    pos, neg = f"ILSVRC2013_train/{BIRD}/{BIRD}_17", f"ILSVRC2013_train/{DOG}/{DOG}_3"
    write(root / "Annotations/DET/train" / f"{pos}.xml", xml_text(BIRD, f"{BIRD}_17", 120, 90, [(BIRD, 5, 5, 60, 80)]))
    jpeg(root / "Data/DET/train" / f"{pos}.JPEG", 120, 90)
    jpeg(root / "Data/DET/train" / f"{neg}.JPEG", 64, 48)
    write(root / "ImageSets/DET/train_26.txt", f"{pos} 1\n{neg} -1\n")  # 26 = bird
    write(root / "ImageSets/DET/train_58.txt", f"{neg} -1\n")  # 58 = dog
    return root


def test_class_list():
    synsets = det_synsets()
    assert len(synsets) == 200 and [s.index for s in synsets] == list(range(1, 201))
    assert len({s.wnid for s in synsets}) == 200 and len({s.name for s in synsets}) == 200
    assert all(len(s.wnid) == 9 and s.wnid[0] == "n" and s.wnid[1:].isdigit() for s in synsets)
    by_index = {s.index: (s.wnid, s.name) for s in synsets}
    assert by_index[26] == (BIRD, "bird") and by_index[58] == (DOG, "dog") and by_index[124] == (PERSON, "person")
    assert by_index[1] == ("n02672831", "accordion") and by_index[200] == ("n02391049", "zebra")


def test_reads_val_split_in_devkit_format(devkit: Path):
    ds = load_dataset(devkit)  # the root; split defaults to val
    assert ds.format == "ilsvrc" and len(ds.classes) == 200 and ds.display_names[BIRD] == "bird"
    assert [a.filename for a in ds.annotations] == [f"{name}.JPEG" for name, *_ in VAL]
    first = ds.annotations[0]
    assert (first.width, first.height, first.labels) == (500, 375, [BIRD, PERSON])
    # 0-based inclusive [10, 20, 109, 69] -> continuous [10, 20, 110, 70]: 100 x 50 pixels
    np.testing.assert_array_equal(first.boxes, [[10, 20, 110, 70], [200, 200, 205, 205]])
    assert len(ds.annotations[2].boxes) == 0  # kept: detections there are false positives
    np.testing.assert_array_equal(ds.annotations[3].boxes, [[300, 100, 501, 333]])  # quirk box kept as is
    assert ds.ignored == {"ILSVRC2012_val_00000002.JPEG": frozenset({DOG})}
    assert ds.image_path(first) == devkit / "Data/DET/val/ILSVRC2012_val_00000001.JPEG"
    assert ds.category_ids[26] == BIRD
    assert not ds.skipped.items


def test_finds_the_layout_from_any_of_its_paths(devkit: Path, tmp_path: Path):
    assert locate(devkit, None) == (devkit.resolve(), "val", None)
    val_txt = devkit / "ImageSets/DET/val.txt"
    assert locate(val_txt, None) == (devkit.resolve(), "val", val_txt.resolve())
    assert locate(devkit / "Annotations/DET/val", None) == (devkit.resolve(), "val", None)
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    (kaggle / "ILSVRC").symlink_to(devkit)
    assert len(load_dataset(kaggle).annotations) == len(VAL)
    assert len(load_dataset(val_txt).annotations) == len(VAL)


def test_train_split_from_per_class_lists(devkit: Path):
    ds = load_dataset(devkit, split="train")  # no train.txt: the union of train_<k>.txt
    assert [a.filename for a in ds.annotations] == [f"ILSVRC2013_train/{BIRD}/{BIRD}_17.JPEG",
                                                    f"ILSVRC2013_train/{DOG}/{DOG}_3.JPEG"]
    negative = ds.annotations[1]
    assert (negative.width, negative.height, len(negative.boxes)) == (64, 48, 0)  # size from the image header
    assert ds.ignored == {}  # the blacklist is for val only
    lists = read_class_image_lists(devkit, "train", ds.skipped)
    assert lists[BIRD].positives == [f"ILSVRC2013_train/{BIRD}/{BIRD}_17"]
    assert lists[BIRD].negatives == [f"ILSVRC2013_train/{DOG}/{DOG}_3"]
    assert lists[DOG].positives == [] and len(lists[DOG].negatives) == 1


def test_bad_input_is_reported_with_file_and_object(devkit: Path):
    ann = devkit / "Annotations/DET/val"
    write(ann / "bad_xml.xml", "<annotation>\n<size><width>10</width>\n</annotation>\n")
    write(ann / "bad_objects.xml", xml_text("v", "bad_objects", 100, 80, [
        ("n99999999", 1, 1, 10, 10),   # unknown synset
        (BIRD, 50, 10, 40, 20),        # xmax < xmin
        (BIRD, -5, 0, 20, 20),         # outside the image
        (DOG, 10, 10, 30, 90),         # outside the image (ymax 90 >= height 80)
        (DOG, 0, 0, 99, 79)]))         # fine: the whole image
    write(devkit / "ImageSets/DET/val.txt", (devkit / "ImageSets/DET/val.txt").read_text()
          + "bad_xml 5\nbad_objects 6\nno_such_image 7\nthis line is wrong\n")
    ds = load_dataset(devkit)
    messages = [s.message for s in ds.skipped.items]
    assert any("bad_xml.xml: malformed XML" in m and "line 3" in m for m in messages)
    assert any("bad_objects.xml: object 0: unknown synset 'n99999999'" in m for m in messages)
    assert any("bad_objects.xml: object 1 (n01503061): xmax < xmin" in m for m in messages)
    assert sum("bad_objects.xml" in m and "outside the 100x80 image" in m for m in messages) == 2
    assert any("no_such_image.JPEG: listed in the image set but has neither" in m for m in messages)
    assert any("val.txt:8: expected '<image> [<number>]'" in m for m in messages)
    assert ds.skipped.counts() == {"annotation file": 1, "object": 4, "image": 1, "line": 1}
    assert "skipped 1 annotation file, 1 image, 4 objects, 1 line" in ds.skipped.summary()
    bad = next(a for a in ds.annotations if a.filename == "bad_objects.JPEG")
    assert bad.labels == [DOG] and bad.boxes.tolist() == [[0, 0, 100, 80]]


def test_voc_and_ilsvrc_conventions_give_the_same_box(tmp_path: Path):
    # the same 100 x 50 pixel box: ILSVRC 0-based inclusive (10, 20)-(109, 69), VOC 1-based (11, 21)-(110, 70)
    write(tmp_path / "r/Annotations/DET/val/a.xml", xml_text("v", "a", 200, 100, [(BIRD, 10, 20, 109, 69)]))
    write(tmp_path / "r/ImageSets/DET/val.txt", "a 1\n")
    ilsvrc_box = load_dataset(tmp_path / "r").annotations[0].boxes
    write_voc_xml(tmp_path / "voc.xml", Annotation("a.jpg", 200, 100, ilsvrc_box, [BIRD]))
    voc_text = (tmp_path / "voc.xml").read_text()
    assert "<xmin>11</xmin>" in voc_text and "<xmax>110</xmax>" in voc_text
    np.testing.assert_array_equal(read_voc_xml(tmp_path / "voc.xml").boxes, ilsvrc_box)


# --- evaluation against a port of eval_det.m on the raw XML numbers ----------------------------

def devkit_eval(ann_dir: Path, names: list[str], preds: list[tuple[int, str, float, list[float]]],
                blacklist: list[tuple[int, str]]) -> dict[str, float]:
    """eval_det.m, loop for loop: preds are (image number, synset, score, inclusive box)."""
    aps, per_image, gt = {}, {}, {}
    npos: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        objs = [(o.findtext("name"), [float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")])
                for o in ET.parse(ann_dir / f"{name}.xml").getroot().iter("object")]
        gt[i] = objs
        for label, _ in objs:
            npos[label] = npos.get(label, 0) + 1
    for k, (img, label, score, box) in enumerate(preds):
        per_image.setdefault(img, []).append((score, k, label, box))
    flags = []
    for img, objs in gt.items():
        black = {wnid for b_img, wnid in blacklist if b_img == img}
        thr = [min(0.5, (b[2] - b[0] + 1) * (b[3] - b[1] + 1) / ((b[2] - b[0] + 11) * (b[3] - b[1] + 11)))
               for _, b in objs]
        detected = [False] * len(objs)
        for score, k, label, bb in sorted(per_image.get(img, []), key=lambda t: -t[0]):
            if label in black:
                continue
            ovmax, kmax = -math.inf, -1
            for j, (gl, bg) in enumerate(objs):
                if gl != label or detected[j]:
                    continue
                iw = min(bb[2], bg[2]) - max(bb[0], bg[0]) + 1
                ih = min(bb[3], bg[3]) - max(bb[1], bg[1]) + 1
                if iw > 0 and ih > 0:
                    ov = iw * ih / ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bg[2] - bg[0] + 1) * (bg[3] - bg[1] + 1)
                                    - iw * ih)
                    if ov >= thr[j] and ov > ovmax:
                        ovmax, kmax = ov, j
            if kmax >= 0:
                detected[kmax] = True
            flags.append((score, img, k, label, kmax >= 0))
        for label, _ in objs:
            if label in black:
                npos[label] -= 1
    flags.sort(key=lambda t: (-t[0], t[1], t[2]))
    for label in npos:
        tp = fp = 0
        rec, prec = [], []
        for _, _, _, lab, hit in flags:
            if lab == label:
                tp, fp = tp + hit, fp + (not hit)
                rec.append(tp / npos[label])
                prec.append(tp / (tp + fp))
        mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        aps[label] = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    return aps


def test_evaluation_matches_devkit_on_raw_xml(devkit: Path):
    # detections in the devkit's inclusive format; incdet gets them as continuous [x, y, w, h]
    preds = [(1, BIRD, 0.9, [12, 20, 109, 71]), (1, BIRD, 0.8, [10, 20, 109, 69]),  # TP, then duplicate FP
             (1, PERSON, 0.7, [199, 199, 206, 206]),  # 5x5 person: IoU 25/64 = 0.39 >= threshold 0.111
             (2, DOG, 0.95, [0, 0, 199, 299]),  # blacklisted pair: ignored
             (2, BIRD, 0.6, [250, 40, 300, 139]),  # IoU 0.51
             (3, BIRD, 0.85, [0, 0, 50, 50]),  # image without objects: FP
             (4, DOG, 0.5, [301, 101, 499, 331]), (4, DOG, 0.5, [290, 90, 480, 320]),  # tie in score
             (4, PERSON, 0.4, [0, 0, 10, 10])]
    ds = load_dataset(devkit)
    names = [name for name, *_ in VAL]
    records = [{"file_name": f"{names[img - 1]}.JPEG", "category_name": wnid,
                "bbox": [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1], "score": s} for img, wnid, s, b in preds]
    result = evaluate_detections(ds.annotations, records, ds.classes, ignored=ds.ignored)
    expected = devkit_eval(devkit / "Annotations/DET/val", names, preds, [(2, DOG)])
    got = {c.name: c.ap for c in result.classes if c.num_gt > 0}
    assert set(got) == set(expected)
    for wnid, ap in expected.items():
        assert got[wnid] == pytest.approx(ap, abs=1e-12), wnid
    assert result.detection_status.tolist() == [1, 0, 1, -1, 1, 0, 1, 0, 0]


def test_incdet_eval_on_a_devkit_root(devkit: Path, tmp_path: Path, capsys):
    from incdet.cli import main

    dets = tmp_path / "dets.json"
    dets.write_text('[{"file_name": "ILSVRC2012_val_00000001.JPEG", "category_id": 26, '
                    '"bbox": [10, 20, 100, 50], "score": 0.9}]')  # category_id 26 = bird (ILSVRC2014_DET_ID)
    assert main(["eval", "--gt", str(devkit), "--dets", str(dets), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "n01503061  bird" in out and "over 3 of 200 classes" in out
    import json

    bird = json.loads((tmp_path / "e.json").read_text())["classes"][25]
    assert (bird["class"], bird["name"], bird["num_gt"], bird["num_tp"]) == (BIRD, "bird", 2, 1)
