"""The ILSVRC-DET reader on fixtures written in the exact layouts of the 2015 release and the
original 2013/2014 one (XML, list files, blacklist, meta_det.mat), and an evaluation on them
checked against a port of eval_detection.m that works on the raw XML numbers.

The builders here are imported by the other test_ilsvrc_* files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from incdet.data.dataset import load_dataset
from incdet.data.ilsvrc_classes import det_synsets
from incdet.data.ilsvrc_layout import locate
from incdet.data.records import Annotation
from incdet.data.voc import read_voc_xml, write_voc_xml

BIRD, DOG, PERSON, BANANA = "n01503061", "n02084071", "n00007846", "n07753592"  # DET_IDs 26, 58, 124, 13
RELEASES = ("2015", "2014")

# val images: (name, width, height, objects as inclusive 0-based xmin, ymin, xmax, ymax)
VAL = [
    ("ILSVRC2012_val_00000001", 500, 375, [(BIRD, 10, 20, 109, 69), (PERSON, 200, 200, 204, 204)]),
    ("ILSVRC2012_val_00000002", 400, 300, [(DOG, 0, 0, 199, 299), (BIRD, 250, 40, 349, 139)]),
    ("ILSVRC2012_val_00000003", 320, 240, []),  # an image without objects
    ("ILSVRC2013_val_00000004", 500, 333, [(DOG, 300, 100, 500, 332)]),  # xmax == width: the devkit quirk
]
BLACKLIST = [(2, DOG)]  # "<val.txt index> <synset>"
# train images: paths without extension in the 2015 / 2014 / 2013 lists, size, objects, {class: label}
TRAIN = [
    ((f"ILSVRC2013_train/{BIRD}/{BIRD}_17", f"{BIRD}/{BIRD}_17", f"{BIRD}_17"), 120, 90,
     [(BIRD, 5, 5, 60, 80)], {BIRD: 1, DOG: -1}),
    ((f"ILSVRC2013_train/{BANANA}/{BANANA}_5", f"{BANANA}/{BANANA}_5", f"{BANANA}_5"), 100, 80,
     [(BANANA, 10, 10, 40, 30)], {BANANA: 0, BIRD: -1}),  # a bunch of bananas, one boxed: partial positive
    (("ILSVRC2013_train_extra0/ILSVRC2013_train_00000009", "ILSVRC2013_DET_train_extra0/ILSVRC2013_train_00000009",
      "ILSVRC2013_train_00000009"), 64, 48, None, {BIRD: -1, DOG: -1}),  # a negative: no XML at all
]
_DEVKIT = {"2015": "ILSVRC2015/devkit", "2014": "ILSVRC2014_devkit", "2013": "ILSVRC2013_devkit"}


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


def write_meta_det(path: Path, order: list | None = None, id_field: str = "ILSVRC2014_DET_ID") -> None:
    """meta_det.mat as the devkit has it: a 1x200 struct array ``synsets``."""
    synsets = order or list(det_synsets())
    arr = np.zeros((1, len(synsets)), dtype=[(id_field, "O"), ("WNID", "O"), ("name", "O"), ("description", "O")])
    for i, s in enumerate(synsets):
        arr[0, i] = (np.array([[i + 1]], np.uint8), s.wnid, s.name, f"the {s.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"synsets": arr}, do_compression=True)


def class_index(wnid: str) -> int:
    return next(s.index for s in det_synsets() if s.wnid == wnid)


def write_release(base: Path, release: str, meta: bool = True) -> Path:
    """VAL and TRAIN in one release's layout under ``base`` ("2015", "2014" or "2013"); returns its root."""
    col = {"2015": 0, "2014": 1, "2013": 2}[release]  # which TRAIN path the lists name
    if release == "2015":
        root = base / "ILSVRC2015"
        devkit, lists = root / "devkit", root / "ImageSets/DET"
        folders = {s: (root / "Data/DET" / s, root / "Annotations/DET" / s) for s in ("val", "train")}
    else:
        root, devkit = base, base / _DEVKIT[release]
        lists, train = devkit / "data/det_lists", f"ILSVRC{release}_DET_train"
        folders = {"val": (root / "ILSVRC2013_DET_val", root / "ILSVRC2013_DET_bbox_val"),
                   "train": (root / train, root / f"ILSVRC{release}_DET_bbox_train")}
    for name, w, h, objects in VAL:
        write(folders["val"][1] / f"{name}.xml", xml_text("ILSVRC2013_val", name, w, h, objects))
        jpeg(folders["val"][0] / f"{name}.JPEG", w, h)
    write(lists / "val.txt", "".join(f"{name} {i}\n" for i, (name, *_) in enumerate(VAL, 1)))
    write(devkit / "data" / f"ILSVRC{release}_det_validation_blacklist.txt", "".join(f"{i} {w}\n" for i, w in BLACKLIST))
    per_class: dict[int, list[tuple[str, int]]] = {}
    for paths, w, h, objects, labels in TRAIN:
        disk = paths[0] if release == "2015" else paths[1]  # 2013 lists bare names of the same files
        jpeg(folders["train"][0] / f"{disk}.JPEG", w, h)
        if objects is not None:
            write(folders["train"][1] / f"{disk}.xml", xml_text(disk.split("/")[0], disk.split("/")[-1], w, h, objects))
        for wnid, label in labels.items():
            per_class.setdefault(class_index(wnid), []).append((paths[col], label))
    for k, entries in per_class.items():
        if release == "2015":
            write(lists / f"train_{k}.txt", "".join(f"{e} {label}\n" for e, label in entries))
            continue
        for label, kind in ((1, "pos"), (0, "part"), (-1, "neg")):
            if any(lb == label for _, lb in entries):
                write(lists / f"train_{kind}_{k}.txt", "".join(f"{e}\n" for e, lb in entries if lb == label))
    if meta:
        write_meta_det(devkit / "data/meta_det.mat")
    return root


@pytest.fixture(params=RELEASES)
def release(request, tmp_path: Path) -> tuple[str, Path]:
    return request.param, write_release(tmp_path, request.param)


def val_folders(release: str, root: Path) -> tuple[Path, Path]:
    """(images, annotations) of val in a written release."""
    if release == "2015":
        return root / "Data/DET/val", root / "Annotations/DET/val"
    return root / "ILSVRC2013_DET_val", root / "ILSVRC2013_DET_bbox_val"


def list_dir(release: str, root: Path) -> Path:
    return root / "ImageSets/DET" if release == "2015" else root / f"ILSVRC{release}_devkit/data/det_lists"


# --- the class list and the readers -----------------------------------------------------------

def test_class_list():
    synsets = det_synsets()
    assert len(synsets) == 200 and [s.index for s in synsets] == list(range(1, 201))
    assert len({s.wnid for s in synsets}) == 200 and len({s.name for s in synsets}) == 200
    assert all(len(s.wnid) == 9 and s.wnid[0] == "n" and s.wnid[1:].isdigit() for s in synsets)
    by_index = {s.index: (s.wnid, s.name) for s in synsets}
    assert by_index[26] == (BIRD, "bird") and by_index[58] == (DOG, "dog") and by_index[124] == (PERSON, "person")
    assert by_index[1] == ("n02672831", "accordion") and by_index[200] == ("n02391049", "zebra")
    # chainercv's list "looked up in meta_det.mat" of the 2014 devkit has bow tie before bow
    assert by_index[28] == ("n02883205", "bow tie") and by_index[29] == ("n02879718", "bow")


def test_both_layouts_read_the_same_val_split(release):
    name, root = release
    ds = load_dataset(root)  # the root; split defaults to val
    images, _ = val_folders(name, root)
    assert ds.format == "ilsvrc" and ds.release == name and len(ds.classes) == 200 and ds.display_names[BIRD] == "bird"
    assert [a.filename for a in ds.annotations] == [f"{n}.JPEG" for n, *_ in VAL]
    first = ds.annotations[0]
    assert (first.width, first.height, first.labels) == (500, 375, [BIRD, PERSON])
    # 0-based inclusive [10, 20, 109, 69] -> continuous [10, 20, 110, 70]: 100 x 50 pixels
    np.testing.assert_array_equal(first.boxes, [[10, 20, 110, 70], [200, 200, 205, 205]])
    assert len(ds.annotations[2].boxes) == 0  # kept: detections there are false positives
    np.testing.assert_array_equal(ds.annotations[3].boxes, [[300, 100, 501, 333]])  # quirk box kept as is
    assert ds.ignored == {"ILSVRC2012_val_00000002.JPEG": frozenset({DOG})}
    assert ds.image_numbers == {f"{n}.JPEG": i for i, (n, *_) in enumerate(VAL, 1)}
    assert ds.image_path(first) == images / "ILSVRC2012_val_00000001.JPEG"
    assert ds.category_ids[26] == BIRD and "checked against" in ds.classes_source
    assert not ds.skipped.items


@pytest.mark.parametrize("name, where", [("2015", "root"), ("2015", "val.txt"), ("2015", "annotations"),
                                         ("2015", "kaggle"), ("2014", "root"), ("2014", "devkit"),
                                         ("2014", "val.txt"), ("2014", "annotations")])
def test_found_from_any_of_its_paths(tmp_path: Path, name: str, where: str):
    root = write_release(tmp_path, name)
    if where == "kaggle":  # Kaggle's copy of the 2015 release: ILSVRC/ inside the folder given
        (tmp_path / "kaggle").mkdir()
        (tmp_path / "kaggle/ILSVRC").symlink_to(root)
    path = {"root": root, "devkit": root / "ILSVRC2014_devkit", "val.txt": list_dir(name, root) / "val.txt",
            "annotations": val_folders(name, root)[1], "kaggle": tmp_path / "kaggle"}[where]
    layout, split, subset = locate(path, None)
    assert layout.release == name and split == "val" and subset == (path.resolve() if where == "val.txt" else None)
    ds = load_dataset(path)
    assert [a.filename for a in ds.annotations] == [f"{n}.JPEG" for n, *_ in VAL]
    assert ds.ignored == {"ILSVRC2012_val_00000002.JPEG": frozenset({DOG})}
    assert ds.image_numbers["ILSVRC2013_val_00000004.JPEG"] == 4  # a split's folder means its val.txt


@pytest.mark.parametrize("name", ["2015", "2014", "2013"])
def test_train_split_from_per_class_lists(tmp_path: Path, name: str):
    root = write_release(tmp_path, name)
    ds = load_dataset(root, split="train")  # no train.txt: the union of the per-class lists
    col = 0 if name == "2015" else 1  # 2013's bare names resolve to the same files as 2014's paths
    expected = sorted(paths[col if name != "2013" else 2] for paths, *_ in TRAIN)
    by_name = {paths[col if name != "2013" else 2]: paths[col] for paths, *_ in TRAIN}
    assert [a.filename for a in ds.annotations] == [f"{by_name[e]}.JPEG" for e in expected]
    negative = next(a for a in ds.annotations if "ILSVRC2013_train_00000009" in a.filename)
    assert (negative.width, negative.height, len(negative.boxes)) == (64, 48, 0)  # size from the image header
    assert all(ds.image_path(a).is_file() for a in ds.annotations)
    banana = next(a for a in ds.annotations if BANANA in a.filename)
    assert ds.partial == {banana.filename: frozenset({BANANA})}  # label 0: not every banana is boxed
    np.testing.assert_array_equal(banana.boxes, [[10, 10, 41, 31]])  # its boxes are still ground truth
    assert ds.ignored == {} and not ds.image_numbers and not ds.skipped.items


def test_bad_input_is_reported_with_file_and_line(release):
    name, root = release
    images, ann = val_folders(name, root)
    write(ann / "bad_xml.xml", "<annotation>\n<size><width>10</width>\n</annotation>\n")
    write(ann / "bad_objects.xml", xml_text("v", "bad_objects", 100, 80, [
        ("n99999999", 1, 1, 10, 10),   # unknown synset
        (BIRD, 50, 10, 40, 20),        # xmax < xmin
        (BIRD, -5, 0, 20, 20),         # outside the image
        (DOG, 10, 10, 30, 90),         # outside the image (ymax 90 >= height 80)
        (DOG, 0, 0, 99, 79)]))         # fine: the whole image
    val_txt = list_dir(name, root) / "val.txt"
    write(val_txt, val_txt.read_text() + "bad_xml 5\nbad_objects 6\nno_such_image 7\nthis line is wrong\n"
                                          "ILSVRC2012_val_00000001 9\n")
    ds = load_dataset(root)
    messages = [s.message for s in ds.skipped.items]
    assert any("bad_xml.xml: malformed XML" in m and "line 3" in m for m in messages)
    assert any("bad_objects.xml: object 0: unknown synset 'n99999999'" in m for m in messages)
    assert any("bad_objects.xml: object 1 (n01503061): xmax < xmin" in m for m in messages)
    assert sum("bad_objects.xml" in m and "outside the 100x80 image" in m for m in messages) == 2
    assert f"{val_txt}:7: no_such_image.JPEG is listed but has neither an annotation file nor an image" in messages
    assert any(m.startswith(f"{val_txt}:8: expected '<image> [<number>]'") for m in messages)
    assert f"{val_txt}:9: image 'ILSVRC2012_val_00000001' is listed twice (first at {val_txt}:1)" in messages
    assert ds.skipped.counts() == {"annotation file": 1, "object": 4, "image": 2, "line": 1}
    bad = next(a for a in ds.annotations if a.filename == "bad_objects.JPEG")
    assert bad.labels == [DOG] and bad.boxes.tolist() == [[0, 0, 100, 80]]
    assert ds.image_numbers["bad_objects.JPEG"] == 6 and "ILSVRC2012_val_00000001.JPEG" in ds.image_numbers


def test_voc_and_ilsvrc_conventions_give_the_same_box(tmp_path: Path):
    # the same 100 x 50 pixel box: ILSVRC 0-based inclusive (10, 20)-(109, 69), VOC 1-based (11, 21)-(110, 70)
    write(tmp_path / "r/Annotations/DET/val/a.xml", xml_text("v", "a", 200, 100, [(BIRD, 10, 20, 109, 69)]))
    write(tmp_path / "r/ImageSets/DET/val.txt", "a 1\n")
    ilsvrc_box = load_dataset(tmp_path / "r").annotations[0].boxes
    write_voc_xml(tmp_path / "voc.xml", Annotation("a.jpg", 200, 100, ilsvrc_box, [BIRD]))
    voc_text = (tmp_path / "voc.xml").read_text()
    assert "<xmin>11</xmin>" in voc_text and "<xmax>110</xmax>" in voc_text
    np.testing.assert_array_equal(read_voc_xml(tmp_path / "voc.xml").boxes, ilsvrc_box)
