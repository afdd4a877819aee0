"""``incdet train detector``: the quick recipe trains a tiny demo split into a model bundle that
``incdet detect --model`` runs; a job killed mid-way and run again gives the same detector as one
never interrupted; bad input is refused in one line before any step starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from incdet.cli import main
from incdet.nets.factory import build_classifier
from fault_helpers import REPO, assert_no_processes_left

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo(make_demo) -> Path:
    return make_demo(train=96, val=10, test=10)


@pytest.fixture(scope="module")
def small(make_demo) -> Path:
    """A demo too small to learn from, for the tests of resuming."""
    return make_demo(train=24, val=4, test=4)


@pytest.fixture(scope="module")
def brief(tmp_path_factory) -> Path:
    """The quick recipe with the fewest epochs a resumed job can be tested with (the member's two, to
    be killed after its first): what a job does around its steps takes as long, its steps seconds."""
    recipe = yaml.safe_load((REPO / "configs" / "recipes" / "quick.yaml").read_text())
    recipe["backbones"]["googlenet"].update(max_epochs=1, optim={**recipe["backbones"]["googlenet"]["optim"], "ema_start_epoch": 0})
    recipe["members"][0].update(max_epochs=2, optim={**recipe["members"][0]["optim"], "ema_start_epoch": 0})
    recipe["multibox"]["max_epochs"] = 1
    path = tmp_path_factory.mktemp("recipe") / "brief.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _args(demo: Path, out: Path, *extra: str, recipe: str | Path = "quick") -> list[str]:
    return ["train", "detector", "--train", str(demo / "train" / "annotations"), "--val", str(demo / "val" / "annotations"),
            "--out", str(out), "--recipe", str(recipe), "--device", "cpu", *extra]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """``incdet ARGS`` in a session of its own, its output into ``log`` (a pipe nobody reads would fill up)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with log.open("w") as sink:
        return subprocess.Popen([sys.executable, "-m", "incdet.cli", *args], stdout=sink, stderr=subprocess.STDOUT, env=env,
                                cwd=log.parent, start_new_session=True)


def _finish(args: list[str], log: Path) -> str:
    process = _start(args, log)
    assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
    return log.read_text()


def _done(out: Path) -> list[str]:
    try:
        return json.loads((out / "job.json").read_text())["done"]
    except (OSError, ValueError, KeyError):
        return []


def _detect(demo: Path, bundle: Path, out: Path) -> bytes:
    assert main(["detect", str(demo / "test" / "images"), "--model", str(bundle), "--out", str(out), "--workers", "0"]) == 0
    return out.read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "job"
    printed = _finish(_args(demo, out), out.parent / "log.txt")
    assert "[1/6] proposals: selective search" in printed and "[6/6] bundle:" in printed
    assert f"detector written to {out / 'bundle'}" in printed
    return out


@pytest.fixture(scope="module")
def brief_uninterrupted(small, brief, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("brief") / "job"
    _finish(_args(small, out, recipe=brief), out.parent / "log.txt")
    return out


def test_the_quick_recipe_gives_a_bundle_that_detects(demo, uninterrupted, tmp_path, capsys) -> None:
    bundle = json.loads((uninterrupted / "bundle" / "bundle.json").read_text())
    assert [Path(m["file"]).parent.name for m in bundle["members"]] == ["members"] and bundle["multibox"] is not None
    val = bundle["results"]["val"]
    assert val["member googlenet64"]["mAP@0.5"] >= 16  # measured: 21.49 (23.42 with the member's seed 1; untrained: under 1)
    assert 0 < val["proposal coverage@0.5"] <= 100
    _detect(demo, uninterrupted / "bundle", tmp_path / "d.json")
    capsys.readouterr()
    assert main(["eval", "--gt", str(demo / "test" / "annotations"), "--dets", str(tmp_path / "d.json"),
                 "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["mean_ap"] >= 0.08  # measured: 0.116 on the 10 test images


def _kill_when(args: list[str], log: Path, condition) -> None:
    process = _start(args, log)
    deadline = time.monotonic() + 600
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert_no_processes_left(process.pid)


def test_killed_between_steps_and_run_again_gives_the_uninterrupted_detector(small, brief, brief_uninterrupted, tmp_path) -> None:
    """Killed as the backbone step is recorded done: the rerun skips the finished steps and trains the
    rest as the uninterrupted job did, bit for bit."""
    out = tmp_path / "job"
    _kill_when(_args(small, out, recipe=brief), tmp_path / "first.txt", lambda: "backbone-googlenet" in _done(out))
    assert _done(out) == ["proposals", "crops", "backbone-googlenet"]
    printed = _finish(_args(small, out, recipe=brief), tmp_path / "second.txt")
    assert "[1/6] proposals: done" in printed and "[3/6] backbone-googlenet: done" in printed
    assert _detect(small, out / "bundle", tmp_path / "resumed.json") == _detect(small, brief_uninterrupted / "bundle", tmp_path / "once.json")


def test_killed_mid_step_and_run_again_continues_from_the_step_checkpoint(small, brief, tmp_path) -> None:
    """Killed inside the member's training, after its first epoch: the rerun continues that training
    from its last checkpoint (not from the start) and finishes the bundle. Not bit for bit the
    uninterrupted job: the data workers' random region samples are drawn anew."""
    out = tmp_path / "job"
    checkpoint = out / "steps" / "member-googlenet64" / "checkpoints" / "last.ckpt"
    _kill_when(_args(small, out, recipe=brief), tmp_path / "first.txt", checkpoint.is_file)
    assert "member-googlenet64" not in _done(out)
    printed = _finish(_args(small, out, recipe=brief), tmp_path / "second.txt")
    assert f"Restored all states from the checkpoint at {checkpoint}" in printed
    assert _done(out)[-1] == "bundle" and (out / "bundle" / "bundle.json").is_file()


def _extra_class(demo: Path, tmp_path: Path) -> list[str]:
    val = tmp_path / "val"
    val.mkdir()
    for xml in (demo / "val" / "annotations").iterdir():
        (val / xml.name).write_text(xml.read_text().replace("<name>rocket</name>", "<name>dragon</name>"))
    images = val.parent / "images"
    images.symlink_to(demo / "val" / "images")
    return ["--val", str(val)]


def _wrong_init(demo: Path, tmp_path: Path) -> list[str]:
    path = tmp_path / "inception_v3.pth"
    torch.save(build_classifier("inception_v3", 10, width=0.25).state_dict(), path)
    return ["--init-googlenet", str(path)]


def _other_job(demo: Path, tmp_path: Path) -> list[str]:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.json").write_text(json.dumps({"inputs": {"format": "incdet.detector_job.v1", "train": "/elsewhere"}, "done": []}))
    return []


def _unknown_key(demo: Path, tmp_path: Path) -> list[str]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "configs" / "recipes" / "quick.yaml").read_text().replace("  alpha: 10.0", "  alpha: 10.0\n  alhpa: 1.0"))
    return ["--recipe", str(recipe)]


@pytest.mark.parametrize("problem, message", [
    (_extra_class, "has class 'dragon'"),
    (_wrong_init, "inception_v3.pth: "),
    (_other_job, "holds another detector job (its train"),
    (_unknown_key, "recipe.yaml: unknown key multibox.alhpa"),
])
def test_bad_input_is_refused_before_any_step(demo, tmp_path, capsys, problem, message) -> None:
    extra = problem(demo, tmp_path)
    args = _args(demo, tmp_path / "out")
    for flag, value in zip(extra[::2], extra[1::2]):  # replace a flag the base command has, or add it
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("incdet: error: ") and message in err, err
    assert not (tmp_path / "out" / "steps").exists() and not (tmp_path / "out" / "proposals").exists()


def test_a_recipe_name_is_the_shipped_recipe_even_beside_a_folder_of_that_name(tmp_path, monkeypatch) -> None:
    # The README makes the data folder `demo/`, then runs `--recipe demo` beside it.
    from incdet.train.detector import recipe_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert recipe_path("demo") == REPO / "configs" / "recipes" / "demo.yaml"
    (tmp_path / "mine").write_text("members: []\n")
    assert recipe_path("mine") == Path("mine")  # a file of that name is a recipe file
