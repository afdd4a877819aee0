"""The streaming engine through ``incdet detect`` / ``incdet propose``: a killed run resumes to a
byte-identical result, Ctrl-C stops cleanly, shards merge into one run's output, a work folder
refuses other settings, and images are keyed by their path in the input folder.

Small photos and an untrained tiny classifier keep every run to seconds; the runs that are killed
are real ``incdet`` processes, killed with real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from fault_helpers import REPO, session_processes, start

from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.cli import main
from incdet.engine.work import assemble
from incdet.io import write_image, write_json
from incdet.proposals.files import load_proposals

SPEC = RegionClassifierSpec(arch="googlenet", classes=("cat", "cup"), input_size=32, context_pad=2, width=0.125)
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "immunohistochemistry", "hubble_deep_field", "coins")


def photo(name: str, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    image = getattr(skimage.data, name)()
    image = np.dstack([image] * 3) if image.ndim == 2 else image[..., :3]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict[str, Path]:
    """Eight photos in two sub-folders (one name in both), and an untrained two-class model."""
    root = tmp_path_factory.mktemp("job")
    for i, name in enumerate(PHOTOS):
        write_image(root / "images" / ("a" if i % 2 else "b") / f"{i // 2:04d}.png", photo(name))
    torch.manual_seed(0)
    save_region_classifier(root / "model.pt", SPEC, SPEC.build().eval())
    return {"images": root / "images", "model": root / "model.pt"}


def detect_args(job: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["detect", str(job["images"]), "--model", str(job["model"]), "--out", str(out), "--score-threshold", "0.3",
            "--batch-images", "2", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory) -> bytes:
    """One uninterrupted run: what every resumed or sharded run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "dets.json"
    assert main(detect_args(job, out)) == 0
    assert not out.with_name("dets.json.parts").exists()  # the work folder goes once the JSON is written
    return out.read_bytes()


def test_images_are_keyed_by_their_path_in_the_input_folder(reference) -> None:
    records = json.loads(reference)
    names = sorted({(r["image_id"], r["file_name"]) for r in records})
    assert {name for _, name in names} <= {f"{d}/{i:04d}.png" for d in "ab" for i in range(4)}
    assert (0, "a/0000.png") in names and (4, "b/0000.png") in names  # the same name in two folders; ids by sorted key


def _wait_for_lines(parts: Path, at_least: int, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        lines = sum(p.read_bytes().count(b"\n") for p in parts.glob("part-*.jsonl")) if parts.is_dir() else 0
        if lines >= at_least:
            return lines
        time.sleep(0.01)
    stderr = process.stderr.read() if process.poll() is not None else ""
    raise AssertionError(f"the run wrote no {at_least} result lines in time (exit code {process.poll()}) {stderr}")


def test_a_run_killed_halfway_resumes_to_a_byte_identical_json(job, reference, tmp_path) -> None:
    out = tmp_path / "dets.json"
    process = start(detect_args(job, out), tmp_path)
    done = _wait_for_lines(out.with_name("dets.json.parts"), 2, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert done < 8 and not out.exists()
    assert main(detect_args(job, out)) == 0
    assert out.read_bytes() == reference


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing_behind(job, reference, tmp_path) -> None:
    out = tmp_path / "dets.json"
    process = start(detect_args(job, out)[:-1] + ["2"], tmp_path)  # two search workers
    _wait_for_lines(out.with_name("dets.json.parts"), 2, process)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("incdet: interrupted; ") and "run the same command again to resume" in lines[0]
    deadline = time.monotonic() + 10
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session_processes(process.pid), "worker processes outlived the CLI"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dets.json.parts"]  # no temporary files, no half-written JSON
    assert main(detect_args(job, out)) == 0
    assert out.read_bytes() == reference


def test_two_shards_merged_equal_one_run(job, reference, tmp_path, capsys) -> None:
    out = tmp_path / "dets.json"
    assert main(detect_args(job, out, "--shard", "2/2")) == 0
    assert "incdet detect --merge" in capsys.readouterr().out
    assert main(["detect", "--merge", "--out", str(out)]) == 2  # shard 1 is missing
    assert "each of the 2 shards" in capsys.readouterr().err
    assert main(detect_args(job, out, "--shard", "1/2")) == 0
    assert not out.exists()
    assert main(["detect", "--merge", "--out", str(out)]) == 0
    assert out.read_bytes() == reference


def test_merging_refuses_an_unfinished_shard_naming_it(job, tmp_path, capsys) -> None:
    from incdet.proposals.store import ProposalStore

    out = tmp_path / "dets.json"
    assert main(detect_args(job, out, "--shard", "1/2")) == 0
    process = start(detect_args(job, out, "--shard", "2/2"), tmp_path)  # killed after its first group
    _wait_for_lines(out.with_name("dets.json.shard-2-of-2.parts"), 1, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    capsys.readouterr()
    assert main(["detect", "--merge", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"incdet: error: {tmp_path / 'dets.json.shard-2-of-2.parts'}: shard 2/2 is not finished; run it to the end first"

    props = tmp_path / "props.json"
    for shard in ("1/2", "2/2"):
        assert main(["propose", str(job["images"]), "--out", str(props), "--workers", "0", "--shard", shard]) == 0
    unfinished = tmp_path / "props.shard-2-of-2.db"
    with ProposalStore(unfinished) as store:
        store.record_job(complete=False)  # as a run killed part-way leaves it
    capsys.readouterr()
    assert main(["propose", "--merge", "--out", str(props)]) == 2
    assert capsys.readouterr().err.strip() == f"incdet: error: {unfinished}: shard 2/2 is not finished; run it to the end first"
    assert not props.exists()


def test_an_image_skipped_for_a_transient_reason_is_retried_by_the_next_run(job, reference, tmp_path, monkeypatch,
                                                                             capsys) -> None:
    from incdet.engine import steps as stages

    out = tmp_path / "dets.json"
    read_image, flaky = stages.read_image, [job["images"] / "b" / "0001.png"]

    def failing_once(path):  # an I/O error of a network disk, the first time only
        if flaky and Path(path) == flaky[0]:
            flaky.clear()
            raise OSError(5, "Input/output error")
        return read_image(path)

    monkeypatch.setattr(stages, "read_image", failing_once)
    in_process = detect_args(job, out)[:-1] + ["0"]
    assert main(in_process) == 0
    printed = capsys.readouterr().out
    assert "1 images skipped" in printed and "run the same command again to retry" in printed
    assert out.exists() and out.read_bytes() != reference and out.with_name("dets.json.parts").is_dir()
    assert main(in_process) == 0
    assert "resuming: 6 of 8 images are done" in capsys.readouterr().out  # only the failed image's group again
    assert out.read_bytes() == reference and not out.with_name("dets.json.parts").exists()


def test_resuming_with_other_settings_is_refused(job, tmp_path, capsys) -> None:
    out = tmp_path / "dets.json"
    assert main(detect_args(job, out, "--shard", "1/3")) == 0  # a shard keeps its work folder
    capsys.readouterr()
    assert main(detect_args(job, out, "--shard", "1/3", "--nms-iou", "0.5")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "other settings: selection.nms_iou 0.3 (now 0.5)" in err and "dets.json.shard-1-of-3.parts" in err
    rerun = main(detect_args(job, out, "--shard", "1/3"))  # the same settings: nothing left to do
    assert rerun == 0 and "resuming: 4 of 4 images are done" in capsys.readouterr().out
    changed = job["images"] / "a" / "0000.png"  # image 0: in the first group, which shard 1 of 3 holds
    original = changed.read_bytes()
    try:
        write_image(changed, photo("coins"))
        assert main(detect_args(job, out, "--shard", "1/3")) == 0
        assert "resuming: 2 of 4 images are done" in capsys.readouterr().out  # the changed image's group is redone
    finally:
        changed.write_bytes(original)


def test_a_line_cut_short_by_a_kill_leaves_its_group_to_do(tmp_path) -> None:
    from incdet.engine.plan import Shard
    from incdet.engine.work import WorkFolder
    from incdet.io import collect_images

    for name in ("a.png", "b.png"):
        write_image(tmp_path / "images" / name, photo("coffee", (40, 30)))
    a, b = collect_images([tmp_path / "images"])
    folder = WorkFolder.open(tmp_path / "work", {"x": 1}, [a, b], Shard())
    stamp = [a.path.stat().st_size, a.path.stat().st_mtime_ns]
    whole = json.dumps({"image_id": 0, "key": "a.png", "stamp": stamp, "records": []})
    cut = json.dumps({"image_id": 1, "key": "b.png", "stamp": [b.path.stat().st_size, b.path.stat().st_mtime_ns], "records": []})
    (tmp_path / "work" / "part-00000.jsonl").write_text(whole + "\n" + cut[:-3])
    folder = WorkFolder.open(tmp_path / "work", {"x": 1}, [a, b], Shard())
    assert folder.done([a]) and not folder.done([b]) and folder.count == 1


def test_propose_shards_resume_and_merge_into_one_store(job, tmp_path, capsys) -> None:
    whole = tmp_path / "whole.json"
    assert main(["propose", str(job["images"]), "--out", str(whole), "--workers", "0"]) == 0
    out = tmp_path / "props.json"
    for shard in ("1/2", "2/2"):
        assert main(["propose", str(job["images"]), "--out", str(out), "--workers", "0", "--shard", shard]) == 0
    capsys.readouterr()
    assert main(["propose", str(job["images"]), "--out", str(out), "--workers", "0", "--shard", "2/2"]) == 0
    assert "resuming: 4 of 4 images are in" in capsys.readouterr().out  # the store keeps finished images
    assert main(["propose", "--merge", "--out", str(out)]) == 0
    merged, single = load_proposals(out), load_proposals(whole)
    assert list(merged) == list(single) and all(np.array_equal(merged[k], single[k]) for k in single)


def test_the_ray_engine_gives_the_local_engines_detections(job, reference, tmp_path) -> None:
    import ray

    out = tmp_path / "dets.json"
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        assert main(detect_args(job, out, "--engine", "ray")) == 0
    finally:
        ray.shutdown()
    assert out.read_bytes() == reference


def test_assembly_writes_exactly_what_write_json_writes(tmp_path) -> None:
    lines = [{"records": [{"image_id": 0, "file_name": "a/ü.png", "bbox": [1.5, 2.0, 3.25, 4.0], "score": 0.12345}]},
             {"skipped": "b.png: not a readable image"}, {"records": []},
             {"records": [{"image_id": 2, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 1e-05}, {"image_id": 2, "bbox": [], "score": 0.5}]}]
    assemble(lines, tmp_path / "streamed.json")
    write_json(tmp_path / "whole.json", [r for line in lines for r in line.get("records", [])])
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    summary = assemble([{"skipped": "x"}], tmp_path / "empty.json")
    assert (tmp_path / "empty.json").read_text() == "[]\n" and summary.skipped == ["x"] and summary.images == 0


def test_the_local_engine_never_imports_ray(job, tmp_path) -> None:
    script = ("import sys; from incdet.cli import main; "
              f"code = main({detect_args(job, tmp_path / 'dets.json')!r}); print(code, 'ray' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr


def test_a_python_batch_job_writes_what_the_command_writes(job, reference, tmp_path) -> None:
    """``incdet.engine.detect_folder``: the command's job from Python, with the same bytes."""
    from incdet.engine import Execution, detect_folder
    from incdet.pipeline import Pipeline, SelectionSettings

    pipeline = Pipeline([job["model"]], multibox=None, selection=SelectionSettings(score_threshold=0.3))
    summary = detect_folder([job["images"]], tmp_path / "dets.json", pipeline, execution=Execution(workers=1), group_size=2)
    assert summary.images == 8 and not summary.skipped
    assert (tmp_path / "dets.json").read_bytes() == reference


def test_a_driver_reads_the_model_files_without_building_a_network(job, tmp_path) -> None:
    """What the Ray engine's driver builds: the job's settings from the files alone (issue 23)."""
    from incdet.errors import InputError
    from incdet.pipeline import Pipeline
    from incdet.weights import DEMO_MULTIBOX

    described = Pipeline([job["model"]], DEMO_MULTIBOX, device="cpu", load=False)
    built = Pipeline([job["model"]], DEMO_MULTIBOX, device="cpu")
    assert described.ensemble is None and described.proposer.multibox is None and built.proposer.multibox is not None
    assert described.settings() == built.settings() and described.classes == built.classes == SPEC.classes
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable torch file"):
        Pipeline([job["model"]], tmp_path / "broken.pt", load=False)
    with pytest.raises(InputError, match="differ from"):
        Pipeline([job["model"]], None, classes=["dog", "cup"], load=False)
