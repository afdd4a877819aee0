import numpy as np
import torch

from incdet.boxes import add_context
from incdet.regions.warp import default_context_pad, warp_image_regions
from incdet.transforms import image_to_tensor


def test_context_pad_scales_with_crop_size():
    assert default_context_pad(224) == 16
    assert default_context_pad(64) == 5


def test_add_context_leaves_the_box_in_the_crop_centre():
    boxes = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    padded = add_context(boxes, output_size=224, context_pad=16)
    # The original box must span 224 - 32 of the 224 warped pixels on each axis.
    assert torch.allclose((boxes[:, 2:] - boxes[:, :2]) / (padded[:, 2:] - padded[:, :2]), torch.tensor(192 / 224))
    assert torch.allclose(padded[:, :2] + padded[:, 2:], boxes[:, :2] + boxes[:, 2:])


def test_warp_fills_the_crop_with_the_box_content():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:40, 20:60] = 200  # a flat patch on black: the warp of its box must be that colour
    tensor = image_to_tensor(image)
    crops = warp_image_regions(tensor, torch.tensor([[20.0, 10.0, 60.0, 40.0]]), 16, 0)
    assert crops.shape == (1, 3, 16, 16)
    inside = tensor[:, 20, 30][:, None, None].expand(3, 14, 14)
    # Border samples lie within half a pixel of the box edge and blend with the black around it.
    assert torch.allclose(crops[0, :, 1:-1, 1:-1], inside, atol=1e-5)
    assert (crops[0, :, 0, :] < inside[:, 0, :1]).all()


def test_outside_the_image_is_filled_with_the_mean():
    tensor = image_to_tensor(np.full((32, 32, 3), 255, np.uint8))
    crop = warp_image_regions(tensor, torch.tensor([[100.0, 100.0, 140.0, 140.0]]), 8, 0)
    assert torch.count_nonzero(crop) == 0  # zero after normalisation = the ImageNet mean colour
