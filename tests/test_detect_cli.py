"""``incdet detect`` end to end on tiny inputs with an untrained model: files, skips, exit codes."""

import json

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from incdet.classify.checkpoint import RegionClassifierSpec, save_region_classifier
from incdet.cli import main
from incdet.proposals.files import save_proposals

SPEC = RegionClassifierSpec(arch="googlenet", classes=("cat", "cup"), input_size=32, context_pad=2, width=0.125)


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_region_classifier(path, SPEC, SPEC.build().eval())
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    cat = cv2.resize(skdata.chelsea(), (96, 64), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "cat.jpg"), cv2.cvtColor(cat, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(cat, cv2.COLOR_RGB2GRAY))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    cv2.imwrite(str(folder / "tiny.png"), cat[:12, :16])
    return folder


def test_detect_writes_results_skips_bad_images_and_draws(tmp_path, model, images, capsys):
    out, drawn = tmp_path / "dets.json", tmp_path / "drawn"
    rc = main(["detect", str(images), "--model", str(model), "--out", str(out), "--draw", str(drawn),
               "--draw-threshold", "0", "--score-threshold", "0", "--workers", "1"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "broken.jpg: not a readable image" in captured.out + captured.err
    assert "tiny.png: image is 16x12 px, smaller than the 20 px minimum region size" in captured.out + captured.err
    records = json.loads(out.read_text())
    assert {r["file_name"] for r in records} == {"cat.jpg", "gray.png"}
    assert all(r["category_name"] in SPEC.classes and len(r["bbox"]) == 4 for r in records)
    assert sorted(p.name for p in drawn.iterdir()) == ["cat.png", "gray.png"]
    assert f"detections written to {out}" in captured.out


def test_detect_with_stored_proposals_and_an_ensemble(tmp_path, model, images):
    proposals = tmp_path / "props.json"
    save_proposals(proposals, {"cat.jpg": np.array([[0, 0, 40, 40], [10, 10, 90, 60]], np.float32)})
    out = tmp_path / "dets.json"
    rc = main(["detect", str(images / "cat.jpg"), "--model", str(model), "--model", str(model),
               "--proposals", str(proposals), "--out", str(out), "--score-threshold", "0"])
    assert rc == 0
    records = json.loads(out.read_text())
    assert {tuple(r["bbox"]) for r in records} <= {(0.0, 0.0, 40.0, 40.0), (10.0, 10.0, 80.0, 50.0)}


def test_nothing_processed_exits_1_and_keeps_old_output(tmp_path, model, images, capsys):
    out = tmp_path / "dets.json"
    out.write_text("[]\n")
    rc = main(["detect", str(images / "broken.jpg"), "--model", str(model), "--out", str(out), "--workers", "1"])
    assert rc == 1
    assert "none of the 1 images could be processed" in capsys.readouterr().err
    assert out.read_text() == "[]\n"


@pytest.mark.parametrize("problem", ["missing_model", "empty_folder", "wrong_classes"])
def test_bad_inputs_exit_2_with_a_one_line_message(tmp_path, model, images, capsys, problem):
    args = ["detect", str(images), "--model", str(model), "--out", str(tmp_path / "d.json")]
    if problem == "missing_model":
        args[3] = str(tmp_path / "nope.pt")
    elif problem == "empty_folder":
        (tmp_path / "empty").mkdir()
        args[1] = str(tmp_path / "empty")
    else:
        (tmp_path / "classes.txt").write_text("dog\ncat\n")
        args += ["--classes", str(tmp_path / "classes.txt")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("incdet: error: ") and "\n" not in err
    assert {"missing_model": "nope.pt", "empty_folder": "no image files", "wrong_classes": "differ from the expected"}[problem] in err
