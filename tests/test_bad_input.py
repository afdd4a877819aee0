"""Bad input as a demanding new user brings it, through the real CLI (issue 16): each case asserts the
exit code (0 done, 1 nothing processed, 2 bad input), no traceback, a message naming the file or
option, and that the good items of the same batch are finished.

One ``incdet detect`` over a folder of every odd image kind (shipped models, 128x96 photos, one
worker) serves all the image cases; refused commands fail before any work, so they cost nothing.
Training configs: tests/test_bad_input_train.py; signals: tests/test_faults.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_corpus import IMAGES, SIZE, photo, run, run_unprivileged, unprivileged_folder, write_images
from PIL import Image

from incdet.data.records import Annotation
from incdet.data.voc import write_voc_xml
from incdet.proposals.files import save_proposals
from incdet.weights import DEMO_MULTIBOX, DEMO_REGION_MODELS

GOOD = sorted(name for name, problem in IMAGES.items() if problem is None)
BAD = sorted(name for name, problem in IMAGES.items() if problem is not None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("corpus") / "images")


@pytest.fixture(scope="module")
def detected(corpus, tmp_path_factory):
    """One detect run over the whole corpus, with drawings: (the run, its detections by file, the drawings folder)."""
    out = tmp_path_factory.mktemp("detect")
    result = run("detect", corpus, "--out", out / "dets.json", "--draw", out / "drawn", "--draw-threshold", "0",
                 "--score-threshold", "0.01", "--workers", "1")
    by_file: dict[str, list] = {}
    for record in json.loads((out / "dets.json").read_text()):
        by_file.setdefault(record["file_name"], []).append(record)
    return result, by_file, out / "drawn"


def test_the_batch_finishes_with_exit_0_and_lists_every_skipped_image(detected) -> None:
    result, by_file, _ = detected
    assert result.code == 0
    assert f"{len(BAD)} images skipped:" in result.out and f"on {len(GOOD)} images" in result.out


@pytest.mark.parametrize("name", GOOD)
def test_a_good_or_odd_but_readable_image_is_detected_and_drawn(detected, name) -> None:
    result, by_file, drawn = detected
    assert by_file.get(name), f"no detections for {name}"
    assert Image.open(drawn / Path(name).with_suffix(".png")).size == SIZE  # 8-bit RGB of the size a viewer shows


@pytest.mark.parametrize("name", BAD)
def test_a_bad_image_is_skipped_with_one_line_naming_it(detected, corpus, name) -> None:
    result, by_file, _ = detected
    lines = [line for line in result.err.splitlines() if line.startswith(f"skipped {corpus / name}: ")]
    assert len(lines) == 1 and IMAGES[name] in lines[0], result.err
    assert name not in by_file


def test_exif_rotated_boxes_are_in_the_orientation_a_viewer_shows(detected) -> None:
    _, by_file, _ = detected
    width, height = SIZE  # stored 96 wide and 128 high; shown 128 x 96
    boxes = np.array([r["bbox"] for r in by_file["sideways.jpg"]])
    assert (boxes[:, 0] + boxes[:, 2] <= width + 1e-3).all() and (boxes[:, 1] + boxes[:, 3] <= height + 1e-3).all()
    assert (boxes[:, 0] + boxes[:, 2]).max() > height  # wider than the stored frame: only the upright frame holds it


@pytest.fixture
def folder(tmp_path):
    """Where the permission cases run: a folder the unprivileged user may use (see run_unprivileged)."""
    with unprivileged_folder(tmp_path) as path:
        yield path


def test_an_unreadable_image_is_skipped_and_the_good_one_detected(folder) -> None:
    Image.fromarray(photo("chelsea")).save(folder / "good.png")
    locked = folder / "locked.png"
    Image.fromarray(photo("coffee")).save(locked)
    locked.chmod(0)
    # Read in the main process: run as another user, an interpreter installed in root's home (pyenv here)
    # cannot start multiprocessing's helper processes (resource tracker, fork server).
    result = run_unprivileged("detect", folder, "--out", folder / "d.json", "--workers", "0")
    assert result.code == 0 and f"skipped {locked}: cannot read the file (permission denied)" in result.err, result.text
    assert {r["file_name"] for r in json.loads((folder / "d.json").read_text())} == {"good.png"}


@pytest.fixture(scope="module")
def with_proposals(corpus, tmp_path_factory):
    """detect --proposals over three good images and two bad ones: one absurd box, one image missing from the file."""
    out = tmp_path_factory.mktemp("proposals")
    boxes = np.array([[10, 10, 60, 50], [40, 20, 120, 90], [0, 0, 128, 96]], np.float32)
    save_proposals(out / "props.json", {"good0.jpg": np.concatenate([boxes, [[-1e7, -1e7, 1e7, 1e7]]]).astype(np.float32),
                                        "good2.jpg": boxes, "huge_header.png": boxes, "truncated.jpg": boxes})
    names = ("good0.jpg", "good1.png", "good2.jpg", "huge_header.png", "truncated.jpg")
    result = run("detect", *(corpus / n for n in names), "--proposals", out / "props.json", "--out", out / "dets.json",
                 "--score-threshold", "0", "--workers", "1")
    return result, json.loads((out / "dets.json").read_text()), out / "props.json"


@pytest.mark.parametrize("name, message", [
    ("good0.jpg", "1 stored proposals reach far outside the 128x96 image; clipped to it"),
    ("good1.png", "no proposals for this image (key 'good1.png') in {props}"),
    ("huge_header.png", "image is larger than the 2^30 pixels OpenCV decodes"),
    ("truncated.jpg", "not a readable image"),
])
def test_stored_proposals_bad_images_and_absurd_boxes_cost_only_themselves(with_proposals, corpus, name, message) -> None:
    result, records, props = with_proposals
    assert result.code == 0
    assert f"{corpus / name}: {message.format(props=props)}" in result.err
    assert {r["file_name"] for r in records} == {"good0.jpg", "good2.jpg"}
    assert all(0 <= r["bbox"][0] and r["bbox"][0] + r["bbox"][2] <= 128.001 for r in records)  # the absurd box, clipped


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory) -> Path:
    """Four VOC files: one good, one malformed, one with a box xmax < xmin beside a good box, one with a box outside."""
    folder = tmp_path_factory.mktemp("gt") / "annotations"
    folder.mkdir()
    (folder.parent / "classes.txt").write_text("cat\ncup\n")
    boxes = np.array([[10, 10, 60, 50], [40, 20, 120, 90]], np.float32)
    write_voc_xml(folder / "a.xml", Annotation("a.jpg", 128, 96, boxes, ["cat", "cup"]))
    write_voc_xml(folder / "b.xml", Annotation("b.jpg", 128, 96, boxes, ["cat", "cup"]))
    (folder / "c.xml").write_text("<annotation><filename>c.jpg</filename><object>")
    write_voc_xml(folder / "d.xml", Annotation("d.jpg", 128, 96, np.array([[10, 10, 60, 50], [500, 0, 600, 40]], np.float32),
                                               ["cat", "cup"]))
    (folder / "b.xml").write_text((folder / "b.xml").read_text().replace("<xmax>60</xmax>", "<xmax>5</xmax>", 1))
    return folder


def _detections(**overrides) -> list[dict]:
    base = [{"file_name": f, "category_name": c, "bbox": [x, y, w, h], "score": s} for f, c, x, y, w, h, s in [
        ("a.jpg", "cat", 10, 10, 50, 40, 0.9), ("a.jpg", "cup", 40, 20, 80, 70, 0.8), ("b.jpg", "cup", 40, 20, 80, 70, 0.7),
        ("d.jpg", "cat", 10, 10, 50, 40, 0.6)]]
    return base + [{"file_name": "a.jpg", "category_name": "cat", "bbox": [0, 0, 5, 5], "score": 0.1, **overrides}]


@pytest.mark.parametrize("extra, code, message", [
    ({}, 0, None),
    ({"score": 1.7}, 0, "warning: {dets}: 1 detection score(s) outside [0, 1], kept"),
    ({"score": -3.0}, 0, "1 detection score(s) outside [0, 1]"),
    ({"score": None}, 0, "skipped: {dets}: detection #4 (a.jpg): score None is not a finite number"),
    ({"bbox": [1, 2, 3]}, 0, "detection #4 (a.jpg): 'bbox' must be four numbers"),
    ({"bbox": [10, 10, -5, 5]}, 0, "negative width or height"),
    ({"category_name": "dragon"}, 0, "category_name 'dragon' is not a known class"),
    ({"file_name": "zzz.jpg"}, 0, "for image 'zzz.jpg', which is not in the ground truth"),
])
def test_eval_skips_bad_annotation_objects_and_detections_but_scores_the_rest(ground_truth, tmp_path, extra, code, message) -> None:
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(_detections(**extra)))
    result = run("eval", "--gt", ground_truth, "--dets", dets, "--json", tmp_path / "r.json")
    assert result.code == code
    assert f"{ground_truth / 'c.xml'}: malformed XML" in result.err
    assert f"{ground_truth / 'b.xml'}: object 0 (cat): xmax < xmin or ymax < ymin (11, 11, 5, 50)" in result.err
    assert f"{ground_truth / 'd.xml'}: object 1 (cup, continuous box [500, 0, 600, 40]): outside the 128x96 image" in result.err
    report = json.loads((tmp_path / "r.json").read_text())
    # b.xml kept its good cup box and d.xml its good cat box: only the bad objects were dropped
    assert {c["class"]: (c["num_gt"], c["num_tp"]) for c in report["classes"]} == {"cat": (2, 2), "cup": (2, 2)}
    assert report["num_images"] == 3
    if message is not None:
        assert message.format(dets=dets) in result.err


@pytest.mark.parametrize("content, code, message", [
    ('[{"file_name": ', 2, "malformed JSON at line 1"), ('{"a": 1}', 2, "expected a JSON list of detection records"),
    ('[{"file_name": "a.jpg", "category_name": "cat", "bbox": [1, 1, 2, 2], "score": NaN}]', 1, "none of the detections could be evaluated"),
])
def test_eval_refuses_a_detection_file_it_cannot_use(ground_truth, tmp_path, content, code, message) -> None:
    (tmp_path / "dets.json").write_text(content)
    result = run("eval", "--gt", ground_truth, "--dets", tmp_path / "dets.json")
    assert result.code == code and message in result.err
    if code == 2:
        assert str(tmp_path / "dets.json") in result.error_line()


def test_propose_with_a_malformed_annotation_reports_it_and_saves_every_image(corpus, ground_truth, tmp_path) -> None:
    result = run("propose", corpus / "good0.jpg", corpus / "good1.png", "--out", tmp_path / "p.json", "--gt", ground_truth,
                 "--workers", "0")
    assert result.code == 0 and f"{ground_truth / 'c.xml'}: malformed XML" in result.err
    assert sorted(json.loads((tmp_path / "p.json").read_text())) == ["good0.jpg", "good1.png"]


def _broken_models(folder: Path) -> dict[str, Path]:
    payload = torch.load(DEMO_REGION_MODELS[0], weights_only=True)
    data = DEMO_REGION_MODELS[0].read_bytes()
    files = {"truncated": data[: len(data) // 2], "text": b"not a model\n"}
    for name, raw in files.items():
        (folder / f"{name}.pt").write_bytes(raw)
    for name, change in {"classes_none": {"classes": None}, "input_size_-8": {"input_size": -8},
                         "no_format": {"format": None}}.items():
        torch.save({**payload, **change}, folder / f"{name}.pt")
    torch.save(payload["state_dict"], folder / "plain_state_dict.pt")
    return {p.stem: p for p in folder.glob("*.pt")} | {"multibox": DEMO_MULTIBOX, "missing": folder / "missing.pt"}


@pytest.mark.parametrize("name, message", [
    ("truncated", "not a readable torch file"), ("text", "not a readable torch file"),
    ("classes_none", "field 'classes' has an unusable value None"), ("input_size_-8", "input_size -8 is below"),
    ("no_format", "not an incdet region-classifier file"), ("plain_state_dict", "not an incdet region-classifier file"),
    ("multibox", "not an incdet region-classifier file"), ("missing", "does not exist"),
])
def test_a_bad_model_file_is_refused_before_any_work(corpus, tmp_path, name, message) -> None:
    model = _broken_models(tmp_path)[name]
    result = run("detect", corpus / "good0.jpg", "--model", model, "--out", tmp_path / "d.json", "--workers", "0")
    assert result.code == 2
    line = result.error_line()
    assert f"{model}: " in line and message in line
    assert not (tmp_path / "d.json.parts").exists()


def _no_gpu_device() -> str:
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


@pytest.mark.parametrize("command, option", [
    ("detect", ["--device", "foo"]), ("detect", ["--device", _no_gpu_device()]), ("detect", ["--superpixel-scale", "-1"]),
    ("detect", ["--nms-iou", "7"]), ("detect", ["--max-detections", "-1"]), ("detect", ["--workers", "-2"]),
    ("propose", ["--superpixel-scale", "-1"]), ("propose", ["--device", "foo"]), ("propose", ["--search-width", "-1"]),
    ("eval", ["--iou", "7"]),
])
def test_a_bad_option_is_refused_with_one_line_naming_it(corpus, ground_truth, tmp_path, command, option) -> None:
    if command == "eval":
        (tmp_path / "d.json").write_text("[]")
        args = ["eval", "--gt", ground_truth, "--dets", tmp_path / "d.json"]
    else:
        args = [command, corpus / "good0.jpg", "--out", tmp_path / "out.json", "--workers", "0"]
    result = run(*args, *option)
    assert result.code == 2
    line = result.error_line()
    assert option[0] in line or repr(option[1]) in line
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.db").exists()


@pytest.mark.parametrize("command, option, message", [
    ("detect", ["--out", "{afile}/d.json"], "{afile} is a file, not a folder"),
    ("detect", ["--out", "{adir}"], "is a directory; expected a file path"),
    ("detect", ["--draw", "{afile}/drawn"], "{afile} is a file, not a folder"),
    ("propose", ["--out", "{afile}/p.json"], "{afile} is a file, not a folder"),
    ("propose", ["--out", "{adir}"], "is a directory; expected a file path"),
    ("eval", ["--json", "{afile}/r.json"], "{afile} is a file, not a folder"),
    ("eval", ["--plots", "{afile}"], "is a file; expected a folder path"),
])
def test_an_unwritable_output_is_refused_before_the_work(corpus, ground_truth, tmp_path, command, option, message) -> None:
    paths = {"afile": tmp_path / "afile", "adir": tmp_path / "adir.json"}
    paths["afile"].write_text("in the way")
    paths["adir"].mkdir()
    option = [o.format(**paths) for o in option]
    if command == "eval":
        (tmp_path / "d.json").write_text("[]")
        args = ["eval", "--gt", ground_truth, "--dets", tmp_path / "d.json", *option]
    else:
        args = [command, corpus / "good0.jpg", *(["--out", tmp_path / "out.json"] if option[0] != "--out" else []), *option,
                "--workers", "0"]
    result = run(*args)
    assert result.code == 2 and message.format(**paths) in result.error_line()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["afile", "adir.json"] + (["d.json"] if command == "eval" else []))


def test_a_read_only_output_folder_is_refused_before_the_work(corpus, folder) -> None:
    shutil.copy(corpus / "good0.jpg", folder)  # pytest's folders are not readable by the unprivileged user
    (folder / "ro").mkdir()
    (folder / "ro").chmod(0o555)
    result = run_unprivileged("detect", folder / "good0.jpg", "--out", folder / "ro" / "d.json", "--workers", "0")
    assert result.code == 2 and "cannot be written: no permission" in result.error_line()
    assert not list((folder / "ro").iterdir())


def test_a_full_disk_mid_run_is_one_line_and_the_finished_images_stay_saved(corpus, tmp_path, monkeypatch) -> None:
    from incdet.engine.steps import Drawing

    drawn = []

    def write(self, results):  # the second drawing finds the disk full
        if drawn:
            raise OSError(28, "No space left on device", str(self.path(results[0].image.key)))
        drawn.append(results)

    monkeypatch.setattr(Drawing, "write", write)
    args = ["detect", corpus / "good0.jpg", corpus / "good1.png", corpus / "good2.jpg", "--out", tmp_path / "d.json",
            "--draw", tmp_path / "drawn", "--batch-images", "1", "--workers", "0"]
    result = run(*args)
    assert result.code == 2 and result.error_line() == f"incdet: error: {tmp_path / 'drawn' / 'good1.png'}: No space left on device"
    monkeypatch.undo()
    resumed = run(*args)
    assert resumed.code == 0 and "resuming: 1 of 3 images are done" in resumed.out

