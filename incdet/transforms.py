"""Image -> tensor conversion and the ImageNet normalisation every network of incdet expects.

One home for these, below every stage: region warping, the classifiers, MultiBox and backbone
training all feed networks the same mean/std-normalised RGB.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

# The statistics the input is normalised with. The networks map such input to the [-1, 1] pixel
# range Google's original weights (which torchvision ports) expect, as torchvision's
# ``transform_input=True`` does.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_uint8_tensor(image: np.ndarray) -> Tensor:
    """HxWx3 uint8 RGB array -> (3, H, W) uint8 tensor (shares memory when it can)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def normalize(pixels: Tensor) -> Tensor:
    """uint8 (..., 3, H, W) pixels -> the ImageNet mean/std-normalised float input of every network."""
    # In place on the new float tensor: a second full-size copy would double the peak memory.
    return TF.normalize(pixels.float().div_(255.0), list(IMAGENET_MEAN), list(IMAGENET_STD), inplace=True)


def image_to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """HxWx3 RGB uint8 -> normalised 3xHxW float tensor on ``device``.

    Normalising *before* warping makes roi_align's zero fill outside the image equal
    to the mean colour, which is exactly R-CNN's "fill with the mean" rule. To a GPU the 8-bit
    pixels go from pinned memory without blocking (a quarter of the float bytes), and are normalised there.
    """
    pixels = image_to_uint8_tensor(image)
    if torch.device(device).type == "cuda":
        pixels = pixels.pin_memory()
    return normalize(pixels.to(device, non_blocking=True))
