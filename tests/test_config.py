import pytest

from incdet.errors import InputError
from incdet.train.config import load_config
from incdet.train.regions.config import RegionTrainConfig


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads():
    cfg = load_config("configs/demo.yaml", RegionTrainConfig)
    assert cfg.model.arch == "googlenet" and cfg.model.resolved_context_pad == 5
    assert cfg.optim.name == "rmsprop" and cfg.optim.rmsprop_eps == 1.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  widht: 0.5\n", "unknown key model.widht"),
        ("model:\n  width: wide\n", "model.width: expected float"),
        ("optim:\n  name: adagrad\n", "optim.name must be one of"),
        ("data:\n  fg_fraction: 1.5\n", "fg_fraction must be in"),
        ("data:\n  root: demo\n", "unknown key data.root"),
        ("max_epochs: 0\n", "max_epochs must be >= 1"),
        ("model: [1, 2]\n", "model: expected a mapping"),
        ("data: {root: [unclosed\n", "invalid YAML"),
        ("optim:\n  label_smoothing: 1.0\n", "label_smoothing must be in"),
        ("trainer:\n  max_epochs: 3\n", "trainer.max_epochs is set by incdet"),
    ],
)
def test_bad_config_values_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as info:
        load_config(_write(tmp_path, text), RegionTrainConfig)
    assert str(info.value).startswith(str(tmp_path / "c.yaml"))
