"""Bad training configs and run folders through ``incdet train`` (issue 16): every one is refused with
exit 2 and one line naming the config file (and key) or the path, before any training starts, so
a typo never costs an hour of training or a training on default paths relative to the current folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bad_input_corpus import run
from region_training_data import write_shapes

TASKS = {
    "regions": {"data": {"images_per_batch": 2, "regions_per_image": 4, "num_workers": 0},
                "model": {"arch": "googlenet", "width": 0.125, "input_size": 32}},
    "multibox": {"data": {"batch_size": 2}, "model": {"num_priors": 4, "input_size": 32, "width": 0.125}},
    "backbone": {"data": {"format": "digits", "batch_size": 8}, "model": {"arch": "googlenet", "width": 0.125,
                                                                           "low_res": True, "input_size": 24}},
}


@pytest.fixture(scope="module")
def annotations(tmp_path_factory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("shapes"), 2, seed=0)


def _config(task: str, annotations: Path, root: Path, **changes) -> dict:
    cfg = {key: dict(value) for key, value in TASKS[task].items()}
    if task != "backbone":
        cfg["data"]["train"] = str(annotations)
    cfg.update(max_epochs=1, out_dir=str(root / "run"), export=str(root / "model.pt"))
    for key, value in changes.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


def _train(task: str, root: Path, cfg: dict | str) -> str:
    path = root / "config.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    result = run("train", task, "--config", path)
    assert result.code == 2
    assert not (root / "run" / "logs").exists() and not (root / "model.pt").exists()  # no training started
    return result.error_line()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("change, message", [
    ({"optim": {"lr": float("nan")}}, "optim.lr: expected a number, got .nan"),
    ({"optim": {"lr": 0.0}}, "optim.lr must be a positive number, got 0.0"),
    ({"model": {"width": float("nan")}}, "model.width: expected a number, got .nan"),
    ({"trainer": {"bogus_option": 1}}, "trainer.bogus_option is not an argument of lightning.Trainer"),
    ({"trainer": {"max_epochs": 3}}, "trainer.max_epochs is set by incdet"),
    ({"max_epochs": 0}, "max_epochs must be >= 1"),
    ({"resume": 3}, "resume: expected bool or str or NoneType, got 3"),
    ({"data": [1, 2]}, "data: expected a mapping, got list"),
    ({"surprise": 1}, "unknown key surprise"),
])
def test_a_bad_config_value_names_the_file_and_key(annotations, tmp_path, task, change, message) -> None:
    line = _train(task, tmp_path, _config(task, annotations, tmp_path, **change))
    assert f"{tmp_path / 'config.yaml'}: " in line and message in line


@pytest.mark.parametrize("task, text, message", [
    ("regions", "data: {}\n", "data.train is required"), ("regions", "", "data.train is required"),
    ("multibox", "data: {}\n", "data.train is required"), ("multibox", "# nothing\n", "data.train is required"),
    ("backbone", "data: {}\n", "data.root is required for the ilsvrc format"),
    ("regions", "data: {train: [unclosed\n", "invalid YAML"),
])
def test_a_config_without_its_data_is_refused_rather_than_training_on_default_paths(tmp_path, task, text, message) -> None:
    assert message in _train(task, tmp_path, text)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("problem", ["export_under_a_file", "export_is_a_folder", "resume_without_a_checkpoint",
                                     "rerun_into_a_used_out_dir", "resume_from_a_cut_checkpoint", "resume_from_a_missing_file"])
def test_a_bad_export_or_run_folder_is_refused_before_training(annotations, tmp_path, task, problem) -> None:
    (tmp_path / "afile").write_text("in the way")
    checkpoints = tmp_path / "run" / "checkpoints"
    changes, expected = {}, ""
    if problem == "export_under_a_file":
        changes, expected = {"export": str(tmp_path / "afile" / "m.pt")}, f"export: cannot be created: {tmp_path / 'afile'} is a file"
    elif problem == "export_is_a_folder":
        (tmp_path / "m.pt").mkdir()
        changes, expected = {"export": str(tmp_path / "m.pt")}, "export: is a directory"
    elif problem == "resume_without_a_checkpoint":
        changes, expected = {"resume": True}, f"{checkpoints / 'last.ckpt'}: resume: true, but there is no checkpoint"
    elif problem == "rerun_into_a_used_out_dir":
        checkpoints.mkdir(parents=True)
        (checkpoints / "last.ckpt").write_bytes(b"a run's checkpoint")
        expected = f"{tmp_path / 'run'}: already holds a training run (checkpoints/last.ckpt); set resume: true"
    elif problem == "resume_from_a_cut_checkpoint":
        checkpoints.mkdir(parents=True)
        (checkpoints / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
        (checkpoints / "epoch=3-step=40.ckpt").write_bytes(b"")
        changes = {"resume": True}
        expected = (f"{checkpoints / 'last.ckpt'}: is not a complete checkpoint (cut short while it was saved?: File is not a "
                    f"zip file); resume from epoch=3-step=40.ckpt (resume: {checkpoints / 'epoch=3-step=40.ckpt'})")
    else:
        changes, expected = {"resume": str(tmp_path / "nope.ckpt")}, f"{tmp_path / 'nope.ckpt'}: checkpoint to resume from does not exist"
    assert expected in _train(task, tmp_path, _config(task, annotations, tmp_path, **changes))
