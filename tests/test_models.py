"""Region-classifier architectures: shapes, size limits, torchvision compatibility, paper budgets."""

from __future__ import annotations

import pytest
import torch
import torchvision

from incdet.cli import main
from incdet.errors import InputError
from incdet.nets.complexity import count_macs, count_parameters
from incdet.nets.factory import (
    build_classifier,
    default_input_size,
    load_backbone_weights,
    min_input_size,
)
from incdet.nets.googlenet import INCEPTION_TABLE, GoogLeNetOutputs, scale_channels
from incdet.nets.inception_v3 import InceptionV3Outputs

VARIANTS = [(arch, low_res) for arch in ("googlenet", "inception_v3") for low_res in (False, True)]


def meta_model(arch: str, num_classes: int = 1000, **kwargs) -> torch.nn.Module:
    """Shapes only, for counting: building on the meta device skips allocation and init."""
    with torch.device("meta"):
        return build_classifier(arch, num_classes, **kwargs)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests run many tiny ops; OpenMP thread hand-offs dominate them, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(("arch", "low_res"), VARIANTS)
def test_eval_logits_at_design_and_minimum_sizes(arch: str, low_res: bool) -> None:
    model = build_classifier(arch, 5, width=0.25, low_res=low_res).eval()
    smallest = min_input_size(arch, low_res)
    for height, width in [(default_input_size(arch, low_res),) * 2, (smallest, smallest + 13)]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, height, width))
        assert out.shape == (1, 5)
        assert torch.isfinite(out).all()


def test_training_outputs_with_and_without_side_heads() -> None:
    x = torch.randn(2, 3, 40, 40)
    googlenet = build_classifier("googlenet", 4, width=0.25, aux_logits=True).train()
    out = googlenet(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [(2, 4)] * 3
    v3 = build_classifier("inception_v3", 4, width=0.25, low_res=True, aux_logits=True).train()
    out = v3(x)
    assert isinstance(out, InceptionV3Outputs)
    assert [t.shape for t in out] == [(2, 4)] * 2
    plain = build_classifier("inception_v3", 4, width=0.25, low_res=True).train()
    assert isinstance(plain(x), torch.Tensor) and plain(x).shape == (2, 4)
    assert isinstance(googlenet.eval()(x), torch.Tensor)


@pytest.mark.parametrize(("arch", "low_res"), VARIANTS)
def test_too_small_input_raises(arch: str, low_res: bool) -> None:
    model = build_classifier(arch, 3, width=0.25, low_res=low_res).eval()
    size = min_input_size(arch, low_res)
    with pytest.raises(ValueError, match=f"at least {size}x{size}"):
        model(torch.randn(1, 3, size - 1, 200))
    with pytest.raises(ValueError, match="3, H, W"):
        model(torch.randn(1, 1, 200, 200))


@pytest.mark.parametrize("low_res", [False, True])
def test_inception_v3_minimum_is_what_the_layers_need(low_res: bool) -> None:
    model = build_classifier("inception_v3", 3, width=0.25, low_res=low_res).eval()
    size = model.min_input_size
    model.min_input_size = 1  # bypass the guard: one pixel less must break the unpadded convs
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, size - 1, size - 1))


def test_scale_channels() -> None:
    for table in INCEPTION_TABLE.values():
        assert [scale_channels(c, 1.0) for c in table] == list(table)
    assert scale_channels(16, 0.25) == 8  # floor of 8
    assert scale_channels(208, 0.25) == 56  # 52 rounded to the nearest multiple of 8, ties up
    assert scale_channels(100, 0.5) == 48
    with pytest.raises(ValueError):
        scale_channels(64, 0.0)


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_classifier("resnet50", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier("googlenet", 0)
    with pytest.raises(ValueError, match="dropout"):
        build_classifier("googlenet", 10, dropout=1.0)


def test_googlenet_matches_torchvision_strictly() -> None:
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, transform_input=True)
    model = build_classifier("googlenet", 1000, aux_logits=True)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x))


def test_inception_v3_matches_torchvision_strictly() -> None:
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True, transform_input=True)
    for module in reference.modules():  # tame torchvision's std-0.1 init so outputs are O(1) to compare
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.fill_(100.0)
    model = build_classifier("inception_v3", 1000, aux_logits=True)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 80, 90)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), rtol=1e-4, atol=1e-5)


def test_load_backbone_weights_replaces_only_the_classifiers(tmp_path) -> None:
    path = tmp_path / "googlenet.pth"
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(reference.state_dict(), path)

    model = build_classifier("googlenet", 21, aux_logits=True)
    report = load_backbone_weights(model, path)
    assert set(report.kept_initial) == {f"{layer}.{p}" for layer in ("fc", "aux1.fc2", "aux2.fc2") for p in ("weight", "bias")}
    assert set(report.ignored) == set(report.kept_initial)
    torch.testing.assert_close(model.inception4e.branch2[1].conv.weight, reference.inception4e.branch2[1].conv.weight)
    torch.testing.assert_close(model.aux1.fc1.weight, reference.aux1.fc1.weight)

    no_heads = build_classifier("googlenet", 1000, low_res=True)  # same weight shapes with the low-res stem
    report = load_backbone_weights(no_heads, path)
    assert report.kept_initial == () and all(k.startswith(("aux1.", "aux2.")) for k in report.ignored)
    torch.testing.assert_close(no_heads.fc.weight, reference.fc.weight)


def test_load_backbone_weights_without_side_heads_in_file(tmp_path) -> None:
    path = tmp_path / "v3.pth"
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), path)
    model = build_classifier("inception_v3", 7, aux_logits=True)
    report = load_backbone_weights(model, path)
    assert all(k.startswith(("fc.", "AuxLogits.")) for k in report.kept_initial)
    assert "AuxLogits.conv0.conv.weight" in report.kept_initial and report.ignored == ("fc.weight", "fc.bias")


def test_load_backbone_weights_refuses_wrong_files(tmp_path) -> None:
    model = build_classifier("googlenet", 10, width=0.5)
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(InputError, match="notes.txt: is not a torch weight file"):
        load_backbone_weights(model, text)
    with pytest.raises(InputError, match="missing.pth: cannot read a torch weight file"):
        load_backbone_weights(model, tmp_path / "missing.pth")
    whole = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    with pytest.raises(InputError, match="whole_model.pt: holds pickled objects"):
        load_backbone_weights(model, whole)
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], listing)
    with pytest.raises(InputError, match="list.pt: is not a state dict"):
        load_backbone_weights(model, listing)
    full = tmp_path / "full_width.pth"
    torch.save(build_classifier("googlenet", 10).state_dict(), full)
    with pytest.raises(InputError, match=r"full_width.pth: .*conv1.conv.weight has shape \(64, 3, 7, 7\), model expects \(32, 3, 7, 7\)"):
        load_backbone_weights(model, full)
    other_arch = tmp_path / "v3.pth"
    torch.save(build_classifier("inception_v3", 10, width=0.5).state_dict(), other_arch)
    with pytest.raises(InputError, match="v3.pth: does not match the GoogLeNet model: unexpected key Conv2d_1a_3x3"):
        load_backbone_weights(model, other_arch)


def test_sizes_match_the_papers_and_torchvision() -> None:
    # GoogLeNet paper: ~6.8M parameters, 1.5G multiply-adds; torchvision's variant (3x3 "5x5"
    # branch, batch norm) has 6.62M. Its two side heads add 3.2M each (training only, not counted).
    googlenet = meta_model("googlenet")
    with torch.device("meta"):
        plain, with_heads = (torchvision.models.googlenet(weights=None, aux_logits=a, init_weights=False) for a in (False, True))
    assert count_parameters(googlenet) == count_parameters(plain) == 6624904
    assert count_parameters(googlenet) == pytest.approx(6.8e6, rel=0.03)
    assert count_macs(googlenet, 224) == pytest.approx(1.5e9, rel=0.01)
    assert count_parameters(meta_model("googlenet", aux_logits=True)) == count_parameters(with_heads) == 13004888
    # Inception-v3 paper: "less than 25 million parameters", ~5G multiply-adds; torchvision: 23.8M, 5.71G.
    v3 = meta_model("inception_v3")
    assert count_parameters(v3) == pytest.approx(23.83e6, rel=0.001)
    assert count_macs(v3, 299) == pytest.approx(5.713e9, rel=0.001)
    assert count_parameters(meta_model("inception_v3", aux_logits=True)) == 27161264  # torchvision's num_params


@pytest.mark.parametrize("arch", ["googlenet", "inception_v3"])
def test_quarter_width_is_about_sixteen_times_smaller(arch: str) -> None:
    full, quarter = meta_model(arch, 21), meta_model(arch, 21, width=0.25)
    size = default_input_size(arch)
    assert 12 < count_parameters(full) / count_parameters(quarter) < 17
    assert 12 < count_macs(full, size) / count_macs(quarter, size) < 17


@pytest.mark.parametrize("arch", ["googlenet", "inception_v3"])
def test_low_res_stem_keeps_the_cost_of_the_full_size_input(arch: str) -> None:
    # Inception-v3 section 9: 79x79 with a stride-1 stem and no first pooling costs about what 299x299 does.
    full = count_macs(meta_model(arch), default_input_size(arch))
    low = count_macs(meta_model(arch, low_res=True), default_input_size(arch, low_res=True))
    assert 0.9 < low / full < 1.0
    normal_stem_at_low_size = count_macs(meta_model(arch), default_input_size(arch, low_res=True))
    assert normal_stem_at_low_size < full / 10


def test_count_macs_restores_training_mode() -> None:
    model = build_classifier("googlenet", 3, width=0.25, aux_logits=True).train()
    assert count_macs(model, 32) > 0
    assert model.training


def test_models_command(capsys) -> None:
    assert main(["models", "--arch", "googlenet", "--width", "1", "0.25", "--low-res"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["arch", "stem", "width", "input", "params", "mult-adds"]
    assert lines[1].split() == ["googlenet", "low-res", "1", "56", "6.62M", "1.410G"]
    assert lines[2].split()[:4] == ["googlenet", "low-res", "0.25", "56"] and len(lines) == 3
    assert main(["models", "--arch", "inception_v3", "--input-size", "74", "--no-low-res"]) == 2
    assert "--input-size 74 is too small for inception_v3 (min 75)" in capsys.readouterr().err
