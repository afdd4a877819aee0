"""Region classifiers start from a pretrained backbone (``model.init``): torchvision state dicts load
strictly, the export of ``incdet train backbone`` loads and fine-tunes (with frozen early layers), and
files of another architecture or width are refused with one line naming them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torchvision
from region_training_data import make_data, region_config, write_config

from incdet.classify.classifier_file import RegionClassifierSpec, load_region_classifier
from incdet.cli import main
from incdet.errors import InputError
from incdet.nets.backbone_file import BackboneSpec, save_backbone
from incdet.train.config import load_config
from incdet.train.regions.config import RegionTrainConfig
from incdet.train.regions.pretrained import initialise_from, trunk_layers
from incdet.train.regions.train import train_regions

CLASSES = ("a", "b", "c")


def _trunk(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


@pytest.mark.parametrize("arch, factory", [
    ("googlenet", lambda: torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False)),
    ("inception_v3", lambda: torchvision.models.inception_v3(weights=None, init_weights=True, aux_logits=False)),
])
def test_a_torchvision_state_dict_loads_strictly_and_the_classifier_is_replaced(tmp_path, arch, factory, caplog) -> None:
    torch.manual_seed(1)
    reference = factory().state_dict()
    torch.save(reference, tmp_path / "tv.pth")
    spec = RegionClassifierSpec(arch=arch, classes=CLASSES, input_size=224 if arch == "googlenet" else 299, context_pad=16, bbox_reg=True)
    model = spec.build()
    fresh_fc = model.net.fc.weight.clone()
    with caplog.at_level(logging.INFO, logger="incdet"):
        report = initialise_from(model, tmp_path / "tv.pth", arch, 1.0, False)
    state = model.net.state_dict()
    assert set(_trunk(state)) == set(_trunk(reference))  # every trunk tensor, none left over
    for key, value in _trunk(reference).items():
        assert torch.equal(state[key], value), key
    assert model.net.fc.weight.shape == (4, reference["fc.weight"].shape[1]) and torch.equal(model.net.fc.weight, fresh_fc)
    assert report.loaded == trunk_layers(arch) and report.new == ("net.fc", "bbox_pred")
    assert f"tv.pth: loaded {len(_trunk(reference))} tensors into {arch}" in caplog.text


def test_a_file_of_another_architecture_or_width_is_refused_naming_it(tmp_path) -> None:
    torch.save(torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=False).state_dict(), tmp_path / "v3.pth")
    model = RegionClassifierSpec(arch="googlenet", classes=CLASSES, input_size=224, context_pad=16).build()
    with pytest.raises(InputError) as info:
        initialise_from(model, tmp_path / "v3.pth", "googlenet", 1.0, False)
    assert str(info.value).startswith(f"{tmp_path / 'v3.pth'}: does not match the GoogLeNet model") and "\n" not in str(info.value)
    narrow = RegionClassifierSpec(arch="googlenet", classes=CLASSES, input_size=224, context_pad=16, width=0.5).build()
    torch.save(model.net.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(InputError, match="wide.pth: does not match the GoogLeNet model: conv1.conv.weight has shape"):
        initialise_from(narrow, tmp_path / "wide.pth", "googlenet", 0.5, False)


def _backbone(path: Path, width: float) -> dict[str, torch.Tensor]:
    """A backbone file as ``incdet train backbone`` exports it, with recognisable (random) weights."""
    spec = BackboneSpec(arch="googlenet", classes=("x", "y", "z", "w"), input_size=32, width=width)
    torch.manual_seed(7)
    net = spec.build()
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.0)  # positive, so batch-norm variances stay valid
    save_backbone(path, spec, net)
    return net.state_dict()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_data(tmp_path_factory.mktemp("regions_init"), train=4, val=2)


def test_fine_tuning_from_a_backbone_file_loads_it_and_keeps_frozen_layers_fixed(data, tmp_path) -> None:
    weights = _backbone(tmp_path / "backbone.pt", 0.125)
    cfg = region_config(data, tmp_path, model={"init": str(tmp_path / "backbone.pt"), "freeze_until": "inception4a"})
    config = load_config(write_config(tmp_path / "c.yaml", cfg), RegionTrainConfig)
    _, model = load_region_classifier(train_regions(config))
    state = model.net.state_dict()
    layers = trunk_layers("googlenet")
    frozen, trained = layers[: layers.index("inception4a") + 1], layers[layers.index("inception4a") + 1 :]
    for key, value in _trunk(weights).items():
        if key.split(".")[0] in frozen:  # weights and batch-norm statistics, exactly as loaded
            assert torch.equal(state[key], value), key
    moved = [k for k in _trunk(weights) if k.split(".")[0] in trained and k.endswith("weight") and not torch.equal(state[k], weights[k])]
    assert moved  # the layers after inception4a were fine-tuned
    assert state["fc.weight"].shape[0] == 3  # 2 classes + background


def test_a_backbone_file_of_another_width_is_refused_before_training(data, tmp_path, capsys) -> None:
    _backbone(tmp_path / "backbone.pt", 0.25)
    path = write_config(tmp_path / "c.yaml", region_config(data, tmp_path, model={"init": str(tmp_path / "backbone.pt")}))
    assert main(["train", "regions", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"incdet: error: {tmp_path / 'backbone.pt'}: is a googlenet backbone at width 0.25; "
                   "the config's model is googlenet at width 0.125\n")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_freeze_until_names_a_layer_of_the_architecture(tmp_path) -> None:
    path = write_config(tmp_path / "c.yaml", {"data": {"train": "x"}, "model": {"init": "b.pt", "freeze_until": "Mixed_5b"}})
    with pytest.raises(InputError, match="model.freeze_until: googlenet has no layer 'Mixed_5b' \\(layers: conv1, conv2, conv3, inception3a"):
        load_config(path, RegionTrainConfig)
    path = write_config(tmp_path / "c.yaml", {"data": {"train": "x"}, "model": {"freeze_until": "conv3"}})
    with pytest.raises(InputError, match="model.freeze_until needs model.init"):
        load_config(path, RegionTrainConfig)
