"""Signals in the middle of real ``incdet propose``, ``detect`` and ``train regions`` runs with two worker
processes (issue 16): after SIGINT, exit 130 with one line and no traceback; after SIGINT or a
SIGKILL of the main process alone (as the OOM killer does), no process of the run lives on, no
temporary file is left once the run is done, and rerunning the command resumes and finishes with
every image. Ctrl-C also at the edges of a run (issue 24): while the fork server still imports
incdet, and as the workers shut down at the end.

tests/test_engine.py covers detect's Ctrl-C with two workers and its byte-identical resume after a
kill of the whole process group; tests/test_region_training.py Ctrl-C of training without workers."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from bad_input_corpus import photo, run
from fault_helpers import assert_no_processes_left, fork_server_running, start, temporary_files, wait_until
from region_training_data import make_data, region_config, write_config

from incdet.classify.classifier_file import (
    RegionClassifierSpec,
    load_region_classifier,
    save_region_classifier,
)
from incdet.io import write_image

COUNT = 12
NAMES = {f"{i:02d}.png" for i in range(COUNT)}
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "immunohistochemistry", "hubble_deep_field", "coins")
PROGRESS = re.compile(r"(proposals|detect): \d+/\d+ images ")  # stderr is no terminal here: progress lines


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Twelve photos: enough that a signal lands while two workers are still searching."""
    folder = tmp_path_factory.mktemp("faults") / "images"
    for i in range(COUNT):
        write_image(folder / f"{i:02d}.png", photo(PHOTOS[i % 8], (128 + 8 * i, 96)))
    return folder


pytestmark = pytest.mark.usefixtures("one_thread")


def _stop(process, sig: int) -> str:
    """Send ``sig`` (SIGINT to the whole job, as Ctrl-C in a terminal; SIGKILL to the main process alone, as
    the OOM killer does), wait for the main process and check that none of its processes lives on;
    returns what it printed on stderr (nothing is read after a SIGKILL: survivors would hold the pipe)."""
    if sig == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    else:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        err = ""
    assert_no_processes_left(process.pid)
    process.stdout.close()
    process.stderr.close()
    return err


def _messages(err: str) -> list[str]:
    """What the run printed on stderr besides its progress lines."""
    return [line for line in err.strip().splitlines() if not PROGRESS.match(line)]


def _interrupted_line(store: Path) -> str:
    return f"incdet: interrupted; {_stored(store)} of {COUNT} images are saved in {store}; run the same command again to resume"


def _stored(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1) as db:
            return db.execute("SELECT count(*) FROM proposals").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy being written
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_propose_with_two_workers_stops_cleanly_and_resumes(images, tmp_path, sig) -> None:
    out = tmp_path / "out" / "props.json"
    args = ["propose", str(images), "--out", str(out), "--workers", "2"]
    process = start(args, tmp_path)
    wait_until(lambda: _stored(out.with_suffix(".db")) >= 2, process, "two stored images")
    err = _stop(process, sig)
    assert not out.exists()  # never a half-written flat file
    if sig == signal.SIGINT:
        assert process.returncode == 130
        assert _messages(err) == [_interrupted_line(out.with_suffix(".db"))]
    else:
        assert process.returncode == -signal.SIGKILL
    result = run(*args[:-1], "0")  # the rerun needs no workers to resume
    assert result.code == 0 and "resuming: " in result.out
    proposals = json.loads(out.read_text())
    assert set(proposals) == NAMES and all(proposals.values())  # every image, each with its boxes
    assert _stored(out.with_suffix(".db")) == COUNT
    assert not temporary_files(tmp_path / "out")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_while_the_fork_server_imports_is_one_line(images, tmp_path, workers) -> None:
    """The fork server and the workers leave Ctrl-C to the main process: in its first seconds the fork
    server, still importing incdet, printed a 30-line traceback under the main process's line. It
    starts before the main process imports torch, so the main process may not have opened the job
    yet: its line is then the CLI's own."""
    out = tmp_path / "out" / "props.json"
    process = start(["propose", str(images), "--out", str(out), "--workers", workers], tmp_path)
    wait_until(lambda: fork_server_running(process.pid), process, "the fork server")
    time.sleep(0.3)  # it imports torch and incdet for seconds
    err = _stop(process, signal.SIGINT)
    assert process.returncode == 130
    assert _messages(err) in ([_interrupted_line(out.with_suffix(".db"))], ["incdet: interrupted"]), err


def test_ctrl_c_as_the_run_ends_is_one_line_or_none(images, tmp_path) -> None:
    """Ctrl-C once every image is stored lands while the workers shut down (inside the DataLoader's
    ``__del__``, which printed "Exception ignored ... KeyboardInterrupt" and exited 0) or after them."""
    out = tmp_path / "out" / "props.json"
    process = start(["propose", str(images), "--out", str(out), "--workers", "2"], tmp_path)
    wait_until(lambda: _stored(out.with_suffix(".db")) == COUNT, process, "every image stored")
    err = _stop(process, signal.SIGINT)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if process.returncode == 130:  # in the loop, or in what follows it
        assert _messages(err) in ([_interrupted_line(out.with_suffix(".db"))], ["incdet: interrupted"]), err
    else:  # done (0), or ended by the signal while Python itself shuts down, as a shell's 130
        assert process.returncode in (0, -signal.SIGINT) and not _messages(err), err


def test_detect_killed_with_two_workers_leaves_no_process_and_resumes(images, tmp_path) -> None:
    spec = RegionClassifierSpec(arch="googlenet", classes=("cat", "cup"), input_size=32, context_pad=2, width=0.125)
    torch.manual_seed(0)
    save_region_classifier(tmp_path / "model.pt", spec, spec.build().eval())
    out = tmp_path / "out" / "dets.json"
    args = ["detect", str(images), "--model", str(tmp_path / "model.pt"), "--out", str(out), "--batch-images", "2",
            "--score-threshold", "0", "--workers", "2"]  # threshold 0: every image has detections
    process = start(args, tmp_path)
    parts = out.with_name("dets.json.parts")
    wait_until(lambda: sum(p.read_bytes().count(b"\n") for p in parts.glob("part-*.jsonl")) >= 2, process, "two results")
    _stop(process, signal.SIGKILL)
    assert not out.exists()
    result = run(*args[:-1], "0")
    done = int(re.search(rf"resuming: (\d+) of {COUNT} images are done", result.out)[1])
    assert result.code == 0 and f"\n{COUNT - done} images in " in result.out  # the rest, no image twice
    assert f" detections on {COUNT} images (" in result.out and "skipped" not in result.text
    assert {r["file_name"] for r in json.loads(out.read_text())} == NAMES
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dets.json"]  # no work folder, no temporary file


@pytest.fixture(scope="module")
def training_data(tmp_path_factory) -> dict[str, Path]:
    return make_data(tmp_path_factory.mktemp("faults_train"), train=8, val=4)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_region_training_with_two_workers_stops_cleanly_and_resumes(training_data, tmp_path, sig) -> None:
    endless = region_config(training_data, tmp_path, max_epochs=1000, data={"num_workers": 2})
    process = start(["train", "regions", "--config", str(write_config(tmp_path / "a.yaml", endless))], tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    wait_until(last.exists, process, "the first checkpoint")
    err = _stop(process, sig)
    assert not (tmp_path / "model.pt").exists()  # no half-trained export
    if sig == signal.SIGINT:
        assert process.returncode == 130 and "Traceback" not in err
        assert err.strip().splitlines()[-1] == "incdet: interrupted"
    epochs = torch.load(last, weights_only=False)["epoch"] + 1  # finished epochs in the checkpoint left behind
    resumed = region_config(training_data, tmp_path, max_epochs=epochs + 1, resume=True)
    result = run("train", "regions", "--config", write_config(tmp_path / "b.yaml", resumed))
    assert result.code == 0
    spec, _ = load_region_classifier(tmp_path / "model.pt")
    assert spec.metadata["epochs"] == epochs + 1  # one more epoch than the killed run had saved
    assert not temporary_files(tmp_path / "run") and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
