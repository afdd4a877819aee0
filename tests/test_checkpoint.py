import re

import pytest
import torch

from incdet.classify.classifier_file import (
    RegionClassifierSpec,
    load_region_classifier,
    save_region_classifier,
)
from incdet.classify.ensemble import Ensemble, load_ensemble
from incdet.errors import InputError
from incdet.regions.warp import warp_image_regions

SPEC = RegionClassifierSpec(arch="googlenet", classes=("cat", "dog"), input_size=32, context_pad=2, width=0.125)


def _save(path, spec=SPEC, seed=0):
    torch.manual_seed(seed)
    model = spec.build().eval()
    save_region_classifier(path, spec, model)
    return model


def test_round_trip_keeps_weights_and_spec(tmp_path):
    model = _save(tmp_path / "m.pt")
    spec, loaded = load_region_classifier(tmp_path / "m.pt")
    assert spec == SPEC and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x).logits, loaded(x).logits)


def test_bad_checkpoints_are_refused_with_the_file_name(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_region_classifier(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt: not a readable torch file"):
        load_region_classifier(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an incdet region-classifier"):
        load_region_classifier(tmp_path / "other.pt")
    _save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["width"] = 0.25
    torch.save(payload, tmp_path / "wrong_width.pt")
    with pytest.raises(InputError, match="does not match its architecture"):
        load_region_classifier(tmp_path / "wrong_width.pt")


def test_ensemble_refuses_a_different_class_list(tmp_path):
    _save(tmp_path / "a.pt")
    _save(tmp_path / "b.pt", RegionClassifierSpec("googlenet", ("cat", "cow"), 32, 2, 0.125))
    with pytest.raises(InputError, match="b.pt: checkpoint classes"):
        load_ensemble([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(InputError, match="a.pt: .*differ from the expected"):
        load_ensemble([tmp_path / "a.pt"], expected_classes=["dog", "cat"])


def test_ensemble_averages_member_softmax(tmp_path):
    a, b = _save(tmp_path / "a.pt", seed=1), _save(tmp_path / "b.pt", seed=2)
    ensemble = load_ensemble([tmp_path / "a.pt", tmp_path / "b.pt"])
    image = torch.randn(3, 48, 64)
    boxes = torch.tensor([[0.0, 0, 30, 30], [10, 5, 60, 40], [0, 0, 64, 48]])
    probs = ensemble([image], [boxes])[0].probs
    warped = warp_image_regions(image, boxes, 32, 2)
    with torch.no_grad():
        expected = (a(warped).logits.softmax(1) + b(warped).logits.softmax(1)) / 2
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(3))
    small_batches = Ensemble(ensemble.specs, list(ensemble.members), batch_size=2)
    assert torch.allclose(small_batches([image], [boxes])[0].probs, probs, atol=1e-6)


@pytest.mark.parametrize("fields, message", [
    ({"classes": ("cat", "cat")}, "classes must be a non-empty list of distinct class names"),
    ({"classes": ()}, "classes must be a non-empty list of distinct class names"),
    ({"input_size": 16}, "input_size 16 is below the 32 px googlenet accepts"),
    ({"arch": "resnet"}, "unknown architecture 'resnet'"),
    ({"width": 0.0}, "width must be positive, got 0.0"),
])
def test_backbone_and_region_classifier_files_check_their_specs_alike(fields, message) -> None:
    """One check for both kinds of network file (issue 23: the backbone's had drifted)."""
    from incdet.nets.backbone_file import BackboneSpec

    common = {"arch": "googlenet", "classes": ("cat", "cow"), "input_size": 32, **fields}
    for spec_type, extra in ((BackboneSpec, {}), (RegionClassifierSpec, {"context_pad": 2})):
        with pytest.raises(ValueError, match=re.escape(message)):
            spec_type(**common, **extra).validate()  # as loading a file does
