"""MultiBox pieces: prior clustering, the bipartite matching, the loss, the network and its checkpoint file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from incdet.errors import InputError
from incdet.multibox.multibox_file import MultiBoxSpec, load_multibox, save_multibox
from incdet.multibox.loss import match_priors, multibox_loss
from incdet.multibox.network import MultiBoxNet
from incdet.multibox.priors import cluster_priors, mirror_boxes, normalise_boxes
from incdet.multibox.propose import predict_images, select_boxes

GROUPS = np.array([[0.1, 0.1, 0.3, 0.4], [0.5, 0.2, 0.9, 0.6], [0.2, 0.6, 0.5, 0.95]])


def test_priors_are_the_centres_of_well_separated_box_groups() -> None:
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.02, 0.02, (3, 30, 4))
    boxes = [GROUPS[g] + jitter[g] for g in range(3)]
    priors = cluster_priors(boxes, 3, seed=1)
    expected = np.stack([GROUPS[g] + jitter[g].mean(0) for g in range(3)])
    order = np.lexsort((expected[:, 2], expected[:, 3], expected[:, 0], expected[:, 1]))
    np.testing.assert_allclose(priors, expected[order], atol=1e-6)
    assert priors.dtype == np.float32


def test_priors_do_not_depend_on_the_seed_when_the_clusters_are_clear() -> None:
    boxes = [np.repeat(GROUPS, 5, axis=0) + np.linspace(0, 0.01, 15)[:, None]]
    np.testing.assert_allclose(cluster_priors(boxes, 3, seed=0), cluster_priors(boxes, 3, seed=7), atol=1e-6)


def test_more_priors_than_distinct_boxes_is_refused() -> None:
    with pytest.raises(ValueError, match="3 distinct training boxes into 4 priors"):
        cluster_priors([np.repeat(GROUPS, 2, axis=0)], 4)


def test_normalise_and_mirror_boxes() -> None:
    boxes = normalise_boxes(np.array([[32, 48, 96, 192]]), 128, 192)
    np.testing.assert_allclose(boxes, [[0.25, 0.25, 0.75, 1.0]])
    np.testing.assert_allclose(mirror_boxes([[0.1, 0.2, 0.3, 0.4]]), [[0.7, 0.2, 0.9, 0.4]])
    np.testing.assert_allclose(mirror_boxes(mirror_boxes(GROUPS)), GROUPS, atol=1e-7)


PRIORS = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0], [0.1, 0.0, 0.6, 0.5]])


def test_each_ground_truth_gets_its_nearest_prior_when_they_differ() -> None:
    gt = torch.tensor([[0.52, 0.5, 1.0, 0.98], [0.0, 0.52, 0.48, 1.0]])
    match = match_priors(PRIORS, gt)
    assert dict(zip(match.gt.tolist(), match.prior.tolist())) == {0: 1, 1: 2}


def test_two_objects_nearest_one_prior_are_split_by_the_assignment() -> None:
    # Both boxes are nearest prior 0; greedy matching would give both to it. The assignment gives
    # prior 0 to box 1 (cost 0) and prior 3 to box 0 (cost 0.0008) rather than prior 0 to box 0
    # (0.0032) and prior 3 to box 1 (0.02): total 0.0008 < 0.0232.
    gt = torch.tensor([[0.04, 0.0, 0.54, 0.5], [0.0, 0.0, 0.5, 0.5]])
    match = match_priors(PRIORS, gt)
    assert dict(zip(match.gt.tolist(), match.prior.tolist())) == {0: 3, 1: 0}


def test_no_ground_truth_matches_nothing() -> None:
    match = match_priors(PRIORS, torch.zeros(0, 4))
    assert len(match.gt) == len(match.prior) == 0


def test_loss_equals_the_formula_on_a_hand_case() -> None:
    alpha = 0.3
    boxes = PRIORS[None].clone()  # predictions sit on their priors
    logits = torch.zeros(1, 4)  # every confidence 0.5
    gt = [torch.tensor([[0.52, 0.5, 1.0, 0.98]])]  # matched to prior 1
    loss = multibox_loss(boxes, logits, PRIORS, gt, alpha)
    location = alpha / 2 * (0.02**2 + 0.02**2)
    assert loss.location.item() == pytest.approx(location, rel=1e-5)
    assert loss.confidence.item() == pytest.approx(4 * math.log(2), rel=1e-5)  # -log(0.5) for each of 4 outputs
    assert loss.total.item() == pytest.approx(location + 4 * math.log(2), rel=1e-5)


def test_loss_averages_images_and_an_image_without_objects_only_pays_confidence() -> None:
    logits = torch.full((2, 4), -2.0)
    loss = multibox_loss(PRIORS[None].repeat(2, 1, 1), logits, PRIORS, [torch.zeros(0, 4), PRIORS[:1]], 1.0)
    negative = -math.log(1 - 1 / (1 + math.exp(2)))
    positive = -math.log(1 / (1 + math.exp(2)))
    assert loss.location.item() == pytest.approx(0.0)
    assert loss.confidence.item() == pytest.approx((4 * negative + 3 * negative + positive) / 2, rel=1e-5)


def small_net(priors: torch.Tensor = PRIORS, input_size: int = 64) -> MultiBoxNet:
    return MultiBoxNet(priors, input_size=input_size, width=0.125, head_channels=8, hidden=16)


def test_untrained_network_predicts_its_priors_with_the_positive_rate() -> None:
    net = small_net().eval()
    out = net(torch.randn(2, 3, 64, 64))
    assert out.boxes.shape == (2, 4, 4) and out.logits.shape == (2, 4)
    torch.testing.assert_close(out.boxes, PRIORS[None].expand(2, 4, 4))
    assert torch.sigmoid(out.logits).mean().item() == pytest.approx(0.01, abs=0.005)


def test_network_refuses_another_input_size() -> None:
    with pytest.raises(ValueError, match="64x64"):
        small_net()(torch.randn(1, 3, 96, 96))


def test_selected_boxes_are_in_image_pixels_ranked_and_suppressed() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.51, 0.5], [0.5, 0.5, 1.2, 1.0]])
    pixels, scores = select_boxes(boxes, torch.tensor([0.0, 1.0, -1.0]), width=200, height=100, top_n=5, nms_iou=0.7)
    np.testing.assert_allclose(pixels, [[0, 0, 102, 50], [100, 50, 200, 100]], atol=1e-4)  # clipped, near-copy removed
    assert scores[0] > scores[1]
    assert len(select_boxes(boxes, torch.zeros(3), 200, 100, top_n=1)[0]) == 1


def test_predictions_scale_back_to_each_images_own_size() -> None:
    net = small_net().eval()
    images = [np.zeros((60, 80, 3), np.uint8), np.zeros((192, 256, 3), np.uint8)]
    (small, _), (large, _) = predict_images(net, images, top_n=4, nms_iou=1.0)
    np.testing.assert_allclose(np.sort(small, axis=0), np.sort(PRIORS.numpy() * [80, 60, 80, 60], axis=0), atol=1e-4)
    np.testing.assert_allclose(np.sort(large, axis=0), np.sort(PRIORS.numpy() * [256, 192, 256, 192], axis=0), atol=1e-4)


def test_checkpoint_round_trip(tmp_path) -> None:
    net = small_net()
    spec = MultiBoxSpec(num_priors=4, input_size=64, width=0.125, head_channels=8, hidden=16)
    save_multibox(tmp_path / "mb.pt", spec, net)
    loaded_spec, loaded = load_multibox(tmp_path / "mb.pt")
    assert loaded_spec == spec and not loaded.training
    torch.testing.assert_close(loaded.priors, PRIORS)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x).boxes, net.eval()(x).boxes)


def test_checkpoint_that_disagrees_with_the_config_is_refused(tmp_path) -> None:
    spec = MultiBoxSpec(num_priors=4, input_size=64, width=0.125, head_channels=8, hidden=16)
    save_multibox(tmp_path / "mb.pt", spec, small_net())
    config = MultiBoxSpec(num_priors=200, input_size=160, width=0.125, head_channels=8, hidden=16)
    with pytest.raises(InputError, match=r"mb.pt: .*priors 4 \(config: 200\), input size 64 \(config: 160\)"):
        load_multibox(tmp_path / "mb.pt", expected=config)


def test_checkpoint_with_broken_priors_or_foreign_content_is_refused(tmp_path) -> None:
    net = small_net()
    net.priors[0] = torch.tensor([0.5, 0.5, 0.2, 0.9])
    spec = MultiBoxSpec(num_priors=4, input_size=64, width=0.125, head_channels=8, hidden=16)
    save_multibox(tmp_path / "bad.pt", spec, net)
    with pytest.raises(InputError, match="x2 <= x1"):
        load_multibox(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an incdet MultiBox checkpoint"):
        load_multibox(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(InputError, match="not a readable torch file"):
        load_multibox(tmp_path / "text.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_multibox(tmp_path / "missing.pt")
