"""Bounding-box regression at inference: R-CNN's targets and their inverse, and the ensemble's
averaging of boxes and scores over members with and without regressors (hand-made member outputs)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from incdet.boxes import decode_deltas, encode_deltas
from incdet.classify.classifier_file import RegionClassifierSpec, save_region_classifier
from incdet.classify.ensemble import Ensemble, load_ensemble
from incdet.classify.model import RegionOutput
from incdet.errors import InputError

CLASSES = ("cat", "cup")


def test_targets_follow_rcnn_and_invert_exactly_on_hand_made_boxes() -> None:
    proposals = torch.tensor([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 8.0, 8.0]])
    truth = torch.tensor([[14.0, 16.0, 74.0, 96.0], [1.0, 2.0, 5.0, 10.0]])
    deltas = encode_deltas(proposals, truth)
    # proposal 0: centre (30, 60), 40 x 80; truth: centre (44, 56), 60 x 80
    expected = torch.tensor([10 * 14 / 40, 10 * -4 / 80, 5 * math.log(60 / 40), 5 * math.log(80 / 80)])
    assert torch.allclose(deltas[0], expected, atol=1e-5)
    assert torch.allclose(decode_deltas(deltas, proposals), truth, atol=1e-4)
    # K boxes per proposal: each block of 4 decodes on the same proposal
    two = decode_deltas(torch.cat([deltas, torch.zeros_like(deltas)], dim=1), proposals)
    assert torch.allclose(two[:, :4], truth, atol=1e-4) and torch.allclose(two[:, 4:], proposals, atol=1e-4)


class FixedMember(nn.Module):
    """A member whose every crop gets the same logits and deltas (hand-made outputs); it records the
    crop size it was given, so a member warped with another member's spec is noticed."""

    def __init__(self, logits: list[float], deltas: list[float] | None) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.deltas = None if deltas is None else torch.tensor(deltas)
        self.sizes: list[int] = []

    def forward(self, crops: Tensor) -> RegionOutput:
        self.sizes.append(crops.shape[-1])
        batch = len(crops)
        deltas = None if self.deltas is None else self.deltas.expand(batch, -1)
        return RegionOutput(self.logits.expand(batch, -1), deltas)


def _spec(input_size: int, bbox_reg: bool, classes: tuple[str, ...] = CLASSES) -> RegionClassifierSpec:
    return RegionClassifierSpec(arch="googlenet", classes=classes, input_size=input_size, context_pad=4, width=0.25, bbox_reg=bbox_reg)


def _delta_row(per_class: list[list[float]]) -> list[float]:
    return [v for four in per_class for v in four]


IMAGE = torch.zeros(3, 60, 80)  # (3, H, W)
BOXES = torch.tensor([[10.0, 10.0, 30.0, 30.0], [60.0, 40.0, 78.0, 58.0]])
LOGITS_A, LOGITS_B, LOGITS_C = [0.0, 2.0, -1.0], [1.0, 0.0, 3.0], [0.5, 0.5, 0.5]
# member A moves class 1 right by a quarter of the width; member C moves it by three quarters;
# class 2: A grows it 2x (dw = log 2, in units of the 5.0 weight), C leaves it
DELTAS_A = _delta_row([[0, 0, 0, 0], [2.5, 0, 0, 0], [0, 0, 5 * math.log(2), 5 * math.log(2)]])
DELTAS_C = _delta_row([[0, 0, 0, 0], [7.5, 0, 0, 0], [0, 0, 0, 0]])


def test_scores_are_the_mean_softmax_and_boxes_the_mean_over_the_members_with_a_regressor() -> None:
    members = [FixedMember(LOGITS_A, DELTAS_A), FixedMember(LOGITS_B, None), FixedMember(LOGITS_C, DELTAS_C)]
    specs = [_spec(64, True), _spec(72, False), _spec(80, True)]
    scores = Ensemble(specs, members)([IMAGE], [BOXES])[0]

    mean = (torch.tensor(LOGITS_A).softmax(0) + torch.tensor(LOGITS_B).softmax(0) + torch.tensor(LOGITS_C).softmax(0)) / 3
    assert torch.allclose(scores.probs, mean.expand(2, -1), atol=1e-6)
    assert [m.sizes for m in members] == [[64], [72], [80]]  # each member warps with its own spec

    # class 1: A moves x by 20 * 0.25 = 5 px, C by 20 * 0.75 = 15 px: the mean moves it by 10 px
    assert torch.allclose(scores.boxes[0, 1], torch.tensor([20.0, 10.0, 40.0, 30.0]), atol=1e-4)
    # class 2: A doubles the 20 px box about its centre (20, 20) to (0, 0, 40, 40), C keeps it: mean (5, 5, 35, 35)
    assert torch.allclose(scores.boxes[0, 2], torch.tensor([5.0, 5.0, 35.0, 35.0]), atol=1e-4)
    # the second box, moved right by 9 px on average, is clipped to the 80 px wide image
    assert torch.allclose(scores.boxes[1, 1], torch.tensor([69.0, 40.0, 80.0, 58.0]), atol=1e-4)
    assert scores.boxes[..., 2].max() <= 80 and scores.boxes[..., 3].max() <= 60


def test_without_regressors_or_with_bbox_reg_off_every_class_keeps_the_proposal() -> None:
    plain = Ensemble([_spec(64, False)], [FixedMember(LOGITS_B, None)])([IMAGE], [BOXES])[0]
    assert plain.boxes is None
    off = Ensemble([_spec(64, True)], [FixedMember(LOGITS_A, DELTAS_A)], bbox_reg=False)
    assert off.regressors == 0 and off([IMAGE], [BOXES])[0].boxes is None


def test_boxes_of_several_images_are_decoded_on_their_own_proposals_and_clipped_to_their_own_image() -> None:
    wide, small = torch.zeros(3, 60, 200), torch.zeros(3, 40, 40)
    ensemble = Ensemble([_spec(64, True)], [FixedMember(LOGITS_A, DELTAS_A)], batch_size=1)
    first, second = ensemble([wide, small], [BOXES, BOXES[:1] * 1.5])
    assert torch.allclose(first.boxes[1, 1], torch.tensor([64.5, 40.0, 82.5, 58.0]), atol=1e-4)  # inside the 200 px image
    assert torch.allclose(second.boxes[0, 1], torch.tensor([22.5, 15.0, 40.0, 40.0]), atol=1e-4)  # (15,15,45,45) + 7.5, clipped


def test_an_ensemble_of_members_with_other_class_lists_is_refused_naming_both_files(tmp_path) -> None:
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    for path, classes in ((first, CLASSES), (second, ("cat", "dog"))):
        spec = _spec(64, False, classes)
        save_region_classifier(path, spec, spec.build())
    with pytest.raises(InputError) as error:
        load_ensemble([first, second])
    message = str(error.value)
    assert "second.pt" in message and "first.pt" in message and "\n" not in message
