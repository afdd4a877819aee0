import pytest

from incdet.errors import InputError
from incdet.proposals.settings import SearchSettings
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
    assert cfg.data.proposals == SearchSettings(superpixel_scale=2.0) and cfg.data.images_per_batch * cfg.data.regions_per_image == 128


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
        ("trainer:\n  bogus_option: 1\n", "trainer.bogus_option is not an argument of lightning.Trainer"),
        ("optim:\n  lr: .nan\n", "optim.lr: expected a number, got .nan"),
        ("optim:\n  lr: .inf\n", "optim.lr must be a positive number, got inf"),
        ("data:\n  proposals: {superpixel_scale: -1}\n", "data.proposals: superpixel scale must be positive, got -1"),
        ("data:\n  proposals: {backend: magic}\n", "data.proposals: selective-search backend must be one of"),
        ("data:\n  fg_iou: 0.7\n", "data.bbox_iou 0.6 is below data.fg_iou 0.7"),
        ("data:\n  images_per_batch: 0\n", "data.images_per_batch must be >= 1"),
        ("model:\n  arch: alexnet\n", "model.arch must be one of googlenet, inception_v3"),
        ("model:\n  input_size: 16\n", "model.input_size 16 is below the 32 px googlenet accepts"),
        ("resume: 3\n", "resume: expected bool or str or NoneType, got 3"),
        ("data: {}\n", "data.train is required"),
    ],
)
def test_bad_config_values_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as info:
        load_config(_write(tmp_path, text), RegionTrainConfig)
    assert str(info.value).startswith(str(tmp_path / "c.yaml"))
