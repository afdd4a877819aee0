"""``incdet detect`` end to end on tiny inputs with an untrained model: files, skips, exit codes."""

import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
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
    """Two different members (other crop size, padding and weights): every (box, class) score of the
    ensemble is the mean of the two members' own scores."""
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    other_spec = RegionClassifierSpec(arch="googlenet", classes=SPEC.classes, input_size=48, context_pad=4, width=0.125)
    save_region_classifier(other, other_spec, other_spec.build().eval())
    proposals = tmp_path / "props.json"
    save_proposals(proposals, {"cat.jpg": np.array([[0, 0, 40, 40], [10, 10, 90, 60]], np.float32)})  # IoU 0.19

    def scores(*models) -> dict:
        out = tmp_path / f"dets{len(models)}_{models[0].stem}.json"
        args = ["detect", str(images / "cat.jpg"), "--proposals", str(proposals), "--out", str(out), "--score-threshold", "0"]
        assert main(args + [a for m in models for a in ("--model", str(m))]) == 0
        return {(tuple(r["bbox"]), r["category_name"]): r["score"] for r in json.loads(out.read_text())}

    first, second, both = scores(model), scores(other), scores(model, other)
    # Every box with every class (no score is 0, the boxes do not overlap enough to suppress each other).
    expected_keys = {(box, name) for box in [(0.0, 0.0, 40.0, 40.0), (10.0, 10.0, 80.0, 50.0)] for name in SPEC.classes}
    assert set(first) == set(second) == set(both) == expected_keys
    for key in expected_keys:
        assert both[key] == pytest.approx((first[key] + second[key]) / 2, abs=2e-5)  # scores are rounded to 5 digits
    assert max(abs(first[k] - second[k]) for k in expected_keys) > 1e-3  # the members do score differently


def test_detect_suppresses_at_rcnns_nms_iou_0_3_by_default(tmp_path, model, images):
    """A pair of proposals at IoU 0.316 leaves one detection per class, a pair at 0.282 both."""
    proposals = tmp_path / "props.json"
    above = [[0, 0, 40, 40], [20.8, 0, 60.8, 40]]  # IoU 1536 / 4864 = 0.316
    below = [[0, 50, 20, 60], [11.2, 50, 31.2, 60]]  # IoU 88 / 312 = 0.282 (10 px from the first pair)
    save_proposals(proposals, {"cat.jpg": np.array(above + below, np.float32)})
    out = tmp_path / "dets.json"
    assert main(["detect", str(images / "cat.jpg"), "--model", str(model), "--proposals", str(proposals), "--out", str(out),
                 "--score-threshold", "0"]) == 0
    records = json.loads(out.read_text())
    for name in SPEC.classes:
        tops = sorted(r["bbox"][1] for r in records if r["category_name"] == name)  # xywh: the pair it came from
        assert tops == [0.0, 50.0, 50.0], tops


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


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (OpenCV refuses to allocate them: cv2.error)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_unreadable(path) -> None:
    """A file that reading raises PermissionError for: mode 000, or for root (who may read anything) a
    link to a kernel file that is write-only even for root."""
    if os.geteuid() == 0:
        path.symlink_to("/proc/sys/vm/drop_caches")
    else:
        path.write_bytes(b"\xff\xd8 secret")
        path.chmod(0)


@pytest.fixture
def bad_images(images):
    """Beside the two good images: corrupt, too small, zero bytes, a 50000x50000 header, unreadable,
    and a good image that selective search will fail on (see the test)."""
    (images / "zero.png").write_bytes(b"")
    (images / "huge.png").write_bytes(png_claiming(50000, 50000))
    make_unreadable(images / "locked.jpg")
    cat = cv2.resize(skdata.chelsea(), (90, 60), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(images / "search_fails.png"), cat)
    return images


def test_every_bad_image_is_reported_and_skipped_and_the_good_ones_detected(tmp_path, model, bad_images, monkeypatch, capsys):
    import importlib

    stage1 = importlib.import_module("incdet.proposals.selective_search")  # the module: the package exports its function

    search = stage1.selective_search

    def failing_search(image, *args, **kwargs):  # a fault no real image was found to cause
        if image.shape[:2] == (60, 90):
            raise MemoryError("cannot allocate the segmentation")
        return search(image, *args, **kwargs)

    monkeypatch.setattr(stage1, "selective_search", failing_search)
    out = tmp_path / "dets.json"
    rc = main(["detect", str(bad_images), "--model", str(model), "--out", str(out), "--score-threshold", "0", "--workers", "0"])
    captured = capsys.readouterr()
    assert rc == 0 and "Traceback" not in captured.err
    reasons = {
        "broken.jpg": "not a readable image", "zero.png": "empty file", "tiny.png": "smaller than the 20 px minimum",
        "huge.png": "larger than the 2^30 pixels OpenCV decodes", "locked.jpg": "cannot read the file (",
        "search_fails.png": "selective search failed (MemoryError: cannot allocate the segmentation)",
    }
    skipped = [line.strip() for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == len(reasons)
    for name, reason in reasons.items():
        assert any(line.startswith(f"skipped {bad_images / name}: ") and reason in line for line in skipped), name
    assert {r["file_name"] for r in json.loads(out.read_text())} == {"cat.jpg", "gray.png"}
    assert f"{len(reasons)} images skipped" in captured.out


def test_stored_proposals_are_clipped_checked_and_missing_ones_named(tmp_path, model, bad_images, capsys):
    proposals = tmp_path / "props.json"
    save_proposals(proposals, {
        "cat.jpg": np.array([[-1e6, -1e6, 1e6, 1e6], [500, 500, 600, 600], [10, 10, 50, 40]], np.float32),
        "huge.png": np.array([[0, 0, 10, 10]], np.float32), "locked.jpg": np.array([[0, 0, 10, 10]], np.float32),
    })
    out = tmp_path / "dets.json"
    rc = main(["detect", str(bad_images / "cat.jpg"), str(bad_images / "gray.png"), str(bad_images / "huge.png"),
               str(bad_images / "locked.jpg"), "--model", str(model), "--proposals", str(proposals), "--out", str(out),
               "--score-threshold", "0", "--workers", "0"])
    captured = capsys.readouterr()
    assert rc == 0 and "Traceback" not in captured.err
    assert f"{bad_images / 'gray.png'}: no proposals for this image (key 'gray.png') in {proposals}" in captured.err
    assert f"{bad_images / 'cat.jpg'}: 2 stored proposals reach far outside the 96x64 image; clipped to it" in captured.err
    assert f"{bad_images / 'cat.jpg'}: 1 stored proposals lie outside the 96x64 image or are not finite; dropped" in captured.err
    assert "huge.png: image is larger than" in captured.err and "locked.jpg: cannot read the file" in captured.err
    boxes = {tuple(r["bbox"]) for r in json.loads(out.read_text())}
    assert boxes and boxes <= {(0.0, 0.0, 96.0, 64.0), (10.0, 10.0, 40.0, 30.0)}  # the huge box, clipped to the image


@pytest.mark.parametrize("problem", ["out_under_a_file", "out_is_a_folder", "draw_under_a_file", "work_folder_is_a_file"])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, model, images, capsys, problem):
    (tmp_path / "afile").write_text("in the way")
    out, draw = tmp_path / "d.json", None
    if problem == "out_under_a_file":
        out = tmp_path / "afile" / "d.json"
    elif problem == "out_is_a_folder":
        out.mkdir()
    elif problem == "draw_under_a_file":
        draw = tmp_path / "afile" / "drawn"
    else:
        (tmp_path / "d.json.parts").write_text("in the way")
    args = ["detect", str(images), "--model", str(model), "--out", str(out)] + (["--draw", str(draw)] if draw else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("incdet: error: ") and "\n" not in err
    assert {"out_under_a_file": "afile is a file", "out_is_a_folder": "d.json: is a directory",
            "draw_under_a_file": "afile is a file", "work_folder_is_a_file": "d.json.parts: is a file"}[problem] in err


@pytest.mark.parametrize("option", [
    ["--device", "foo"], ["--device", "cuda:99" if torch.cuda.is_available() else "cuda"], ["--superpixel-scale", "-1"],
    ["--nms-iou", "7"], ["--max-detections", "-1"], ["--score-threshold", "2"], ["--shard", "3/2"], ["--batch-images", "0"],
    ["--workers", "-1"], ["--multibox-top-n", "0"], ["--draw-threshold", "1.5"], ["--search-width", "-5"], ["--ss-backend", "nope"],
])
def test_bad_options_are_refused_up_front_with_one_line(tmp_path, model, images, capsys, option):
    assert main(["detect", str(images), "--model", str(model), "--out", str(tmp_path / "d.json"), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("incdet: error: ") and "\n" not in err
    assert option[0] in err or option[1] in err
    assert not (tmp_path / "d.json.parts").exists()


@pytest.mark.parametrize("command", ["detect", "propose"])
def test_the_workers_start_before_this_process_imports_torch(tmp_path, command):
    """The fork server imports incdet for the search workers (seconds) while the job imports torch and
    loads its networks, not after: so `incdet detect` imports its command's module alone, and starts
    the fork server before anything imports torch."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import incdet.engine.forkserver as forkserver\n"
        "seen = []\n"
        "forkserver.start_fork_server = lambda: seen.append(sorted({'torch', 'cv2'} & set(sys.modules)))\n"
        "from incdet.cli import main\n"
        f"code = main([{command!r}, {str(tmp_path / 'none')!r}, '--out', {str(tmp_path / 'out.json')!r}])\n"
        "print(seen[0])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1] == "[]", run.stdout + run.stderr  # neither imported when it started
