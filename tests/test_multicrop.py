"""1-, 10- and 144-crop generation: counts, geometry and distinctness (GoogLeNet paper, section 7)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from incdet.nets.multicrop import crop_plan, extract_crops, resized_shape, scaled_side
from incdet.transforms import normalize


def noise(height: int, width: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("height,width", [(48, 80), (80, 48)])  # landscape and portrait
def test_144_crops_are_the_papers_4_scales_3_squares_6_crops_2_mirrors(height: int, width: int) -> None:
    size = 32
    plan = crop_plan(144, height, width, size)
    assert len(plan) == 144
    sides = [scaled_side(s, size) for s in (256, 288, 320, 352)]
    assert sides == [37, 41, 46, 50] and sorted({c.side for c in plan}) == sides
    assert len({(c.side, c.square, c.window, c.mirrored) for c in plan}) == 144
    for side in sides:
        h, w = resized_shape(height, width, side)
        assert min(h, w) == side
        squares = sorted({c.box for c in plan if c.side == side and c.window == "square"})
        along = 0 if w > h else 1  # squares slide along the longer side: first, centre, last
        assert [b[along] for b in squares] == [0, round((max(h, w) - side) / 2), max(h, w) - side]
        for crop in (c for c in plan if c.side == side):
            x1, y1, x2, y2 = crop.box
            assert 0 <= x1 and 0 <= y1 and x2 <= w and y2 <= h
            expected = side if crop.window == "square" else size
            assert (x2 - x1, y2 - y1) == (expected, expected)
    crops = extract_crops(noise(height, width), plan, size)
    assert crops.shape == (144, 3, size, size) and crops.dtype == torch.uint8
    assert len({c.numpy().tobytes() for c in crops}) == 144  # exactly 144 distinct crops


def test_144_crops_are_cut_from_the_resized_image() -> None:
    image, size = noise(48, 80), 32
    plan = crop_plan(144, 48, 80, size)
    crops = extract_crops(image, plan, size)
    for index in (0, 4, 5, 6, 143):
        crop = plan[index]
        resized = TF.resize(image, list(resized_shape(48, 80, crop.side)), antialias=True)
        x1, y1, x2, y2 = crop.box
        view = resized[:, y1:y2, x1:x2]
        if crop.window == "square":
            view = TF.resize(view, [size, size], antialias=True)
        torch.testing.assert_close(crops[index], view.flip(-1) if crop.mirrored else view)


def test_square_images_repeat_the_three_squares() -> None:
    crops = extract_crops(noise(40, 40), crop_plan(144, 40, 40, 24), 24)
    assert len(crops) == 144 and len({c.numpy().tobytes() for c in crops}) == 48  # one square, not three


def test_ten_crops_are_five_crops_and_their_reflections() -> None:
    image, size = noise(48, 80), 32
    crops = extract_crops(image, crop_plan(10, 48, 80, size), size)
    resized = TF.resize(image, [scaled_side(256, size)], antialias=True)
    torch.testing.assert_close(crops[:5], torch.stack(TF.five_crop(resized, [size, size])))
    torch.testing.assert_close(crops[5:], crops[:5].flip(-1))
    assert len({c.numpy().tobytes() for c in crops}) == 10


def test_single_crop_is_the_central_87_5_percent() -> None:
    image = noise(48, 80)
    crops = extract_crops(image, crop_plan(1, 48, 80, 224), 224)
    expected = TF.center_crop(TF.resize(image, [256], antialias=True), [224, 224])
    torch.testing.assert_close(crops[0], expected)


def test_unknown_crop_count_and_normalisation() -> None:
    with pytest.raises(ValueError, match="num_crops must be one of"):
        crop_plan(12, 40, 40, 24)
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    torch.testing.assert_close(normalize(white)[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))
