"""An ensemble of members that differ in crop size and context padding scores each box with the mean of
what every member, run alone on its own crop of that box, gives it.

The expected values are computed here without the library's warp: each box is dilated by its member's
own context and cut out with one ``roi_align`` call of its own (crop-and-resize). With members of
different specs and 1, 2 and 3 members, warping every member with the first member's spec, dividing by a
constant instead of the member count, or cutting a box out of another image of the batch all fail.
"""

from __future__ import annotations

import cv2
import pytest
import skimage.data
import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from incdet.classify.classifier_file import RegionClassifierSpec
from incdet.classify.ensemble import Ensemble
from incdet.transforms import image_to_tensor

CLASSES = ("cat", "cup", "rocket")
# Crop size and context padding differ between the members (R-CNN's 16/224 would be 5 at 64 px).
SPECS = (RegionClassifierSpec("googlenet", CLASSES, 64, 5, 0.125),
         RegionClassifierSpec("googlenet", CLASSES, 80, 16, 0.125),
         RegionClassifierSpec("googlenet", CLASSES, 48, 2, 0.125))
ATOL = 1e-5


def _member(spec: RegionClassifierSpec, seed: int) -> nn.Module:
    """A random member whose output depends on its input: freshly built, the convolutions' small
    weights (std 0.01) leave every crop the same softmax, so the batch-norm statistics are first set
    from one batch of noise, as a short training run would set them."""
    torch.manual_seed(seed)
    model = spec.build()
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = None  # the running statistics become that one batch's
    with torch.no_grad():
        model.train()(torch.randn(32, 3, spec.input_size, spec.input_size))
    return model.eval()


def _crop(image: Tensor, box: list[float], size: int, pad: int) -> Tensor:
    """R-CNN's warp of one (x1, y1, x2, y2) box, written out: dilate it about its centre so ``pad`` px of
    context surround it at ``size`` px, then crop-and-resize that square from the normalised image."""
    x1, y1, x2, y2 = box
    scale = size / (size - 2 * pad)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
    region = torch.tensor([[0.0, cx - hw, cy - hh, cx + hw, cy + hh]])
    return roi_align(image[None], region, size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)[0]


def _alone(model: nn.Module, image: Tensor, boxes: Tensor, size: int, pad: int) -> Tensor:
    """One member's softmax over its own crops of one image's boxes."""
    crops = torch.stack([_crop(image, box, size, pad) for box in boxes.tolist()])
    with torch.no_grad():
        return model(crops).logits.softmax(dim=1)


@pytest.fixture(scope="module")
def members() -> list[nn.Module]:
    return [_member(spec, seed) for seed, spec in enumerate(SPECS)]


@pytest.fixture(scope="module")
def scene() -> tuple[list[Tensor], list[Tensor]]:
    """Two photos of different sizes; boxes of several shapes, one reaching outside its image."""
    images = [image_to_tensor(cv2.resize(skimage.data.chelsea(), (96, 64), interpolation=cv2.INTER_AREA)),
              image_to_tensor(cv2.resize(skimage.data.coffee(), (80, 60), interpolation=cv2.INTER_AREA))]
    boxes = [torch.tensor([[4.0, 6, 60, 50], [30, 10, 90, 40], [50, 20, 70, 62]]),
             torch.tensor([[0.0, 0, 40, 30], [20, 15, 78, 58], [-8, 30, 30, 70], [44, 2, 60, 28]])]
    return images, boxes


@pytest.mark.parametrize("count", [1, 2, 3])
def test_ensemble_is_the_mean_of_each_member_alone_on_its_own_crops(members, scene, count: int) -> None:
    images, boxes = scene
    specs, models = SPECS[:count], members[:count]
    expected = [sum(_alone(m, image, b, s.input_size, s.context_pad) for s, m in zip(specs, models)) / count
                for image, b in zip(images, boxes)]
    got = Ensemble(specs, models, batch_size=3)(images, boxes)  # batches of 3 crops span the two images
    assert [len(scores.probs) for scores in got] == [3, 4]
    for scores, want in zip(got, expected):
        torch.testing.assert_close(scores.probs, want, atol=ATOL, rtol=0)
        torch.testing.assert_close(scores.probs.sum(dim=1), torch.ones(len(want)), atol=ATOL, rtol=0)
    if count > 1:  # the test can tell: every member on the first member's crops is far from the answer
        first = SPECS[0]
        same_warp = sum(_alone(m, images[0], boxes[0], first.input_size, first.context_pad) for m in models) / count
        assert (same_warp - expected[0]).abs().max() > 100 * ATOL


def test_each_image_of_the_batch_is_scored_on_its_own_crops(members, scene) -> None:
    """The same box in two images: each image's crops, not the first image's, give its scores."""
    images, _ = scene
    box = torch.tensor([[10.0, 5, 60, 45]])
    got = Ensemble(SPECS[:2], members[:2])(images, [box, box])
    for image, scores in zip(images, got):
        want = sum(_alone(m, image, box, s.input_size, s.context_pad) for s, m in zip(SPECS[:2], members[:2])) / 2
        torch.testing.assert_close(scores.probs, want, atol=ATOL, rtol=0)
    assert (got[0].probs - got[1].probs).abs().max() > 100 * ATOL
