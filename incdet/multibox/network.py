"""The MultiBox network (Erhan et al. 2014): K boxes and K objectness scores from one whole image.

Trunk: GoogLeNet's feature stack up to inception4e (torchvision blocks, width-scaled), stride 16,
so a 160 px input leaves a 10x10 grid. Head: each prior box pools the (1x1-reduced) features under
it with ``roi_align`` and one small predictor, shared by all priors, turns those features and the
prior's own coordinates into an offset and an objectness score. Erhan et al. give every output its
own fully connected weights instead; each of those K predictors learns only from the objects
matched to its own prior, while the shared predictor learns from every object for every prior,
which is what a dataset of a few hundred images (the demo's 240) can support.

Output k is prior k plus an offset scaled by the prior's size, in coordinates normalised by the
image width and height, as the paper regresses them; the whole image is resized (anisotropically)
to a square input.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.googlenet import BasicConv2d
from torchvision.ops import roi_align

from incdet.nets.googlenet import (
    INCEPTION_TABLE,
    GoogLeNet,
    check_input,
    scale_channels,
)
from incdet.transforms import image_to_tensor

TRUNK_LAYERS = ("transform_input", "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e")
MIN_INPUT_SIZE = 32
POOL_SIZE = 3  # features pooled per prior: a 3x3 grid keeps where inside the prior the object sits


class MultiBoxOutput(NamedTuple):
    """``boxes`` (B, K, 4) normalised xyxy (not clipped), ``logits`` (B, K) objectness before the sigmoid."""

    boxes: Tensor
    logits: Tensor


class MultiBoxNet(nn.Module):
    """GoogLeNet trunk + prior-pooled MultiBox head over ``priors`` (K, 4), a buffer so they travel with the weights."""

    def __init__(
        self,
        priors: Tensor,
        *,
        input_size: int,
        width: float = 0.25,
        head_channels: int = 64,
        hidden: int = 128,
        dropout: float = 0.3,
        positive_rate: float = 0.01,
    ) -> None:
        super().__init__()
        if priors.dim() != 2 or priors.shape[1] != 4 or not len(priors):
            raise ValueError(f"priors must be a non-empty (K, 4) tensor, got shape {tuple(priors.shape)}")
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE}, got {input_size}")
        self.input_size = input_size
        self.register_buffer("priors", priors.detach().clone().float())

        googlenet = GoogLeNet(1, width=width)  # its classifier layers are not used
        self.trunk = nn.Sequential(*(getattr(googlenet, name) for name in TRUNK_LAYERS))
        ch1x1, _, ch3, _, ch5, pool = (scale_channels(c, width) for c in INCEPTION_TABLE[TRUNK_LAYERS[-1]])
        channels = ch1x1 + ch3 + ch5 + pool  # an Inception module concatenates its four branches
        self.reduce = BasicConv2d(channels, head_channels, kernel_size=1)
        self.head = nn.Sequential(
            nn.Linear(head_channels * POOL_SIZE * POOL_SIZE + 4, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.offsets = nn.Linear(hidden, 4)
        self.objectness = nn.Linear(hidden, 1)
        # Start at "every box is its prior, each prior an object with the training positive rate":
        # the first steps then learn from a sensible loss instead of undoing a random one.
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)
        nn.init.normal_(self.objectness.weight, std=0.01)
        nn.init.constant_(self.objectness.bias, math.log(positive_rate / (1 - positive_rate)))

    @property
    def num_priors(self) -> int:
        return len(self.priors)

    def forward(self, images: Tensor) -> MultiBoxOutput:
        """``images``: (B, 3, input_size, input_size) ImageNet mean/std-normalised RGB."""
        check_input(images, MIN_INPUT_SIZE, "multibox")
        if images.shape[2:] != (self.input_size, self.input_size):
            raise ValueError(f"multibox expects {self.input_size}x{self.input_size} inputs, got {images.shape[3]}x{images.shape[2]}")
        features = self.reduce(self.trunk(images))
        batch, k = len(images), self.num_priors
        rois = [self.priors * self.input_size] * batch  # the same priors, in input pixels, for every image
        pooled = roi_align(features, rois, POOL_SIZE, spatial_scale=features.shape[-1] / self.input_size, sampling_ratio=2, aligned=True)
        hidden = self.head(torch.cat([pooled.flatten(1), self.priors.repeat(batch, 1)], dim=1))
        size = (self.priors[:, 2:] - self.priors[:, :2]).repeat(1, 2)
        boxes = self.priors + self.offsets(hidden).view(batch, k, 4) * size
        return MultiBoxOutput(boxes, self.objectness(hidden).view(batch, k))


def resize_image(image: np.ndarray, input_size: int) -> Tensor:
    """HxWx3 RGB uint8 -> normalised (3, S, S) tensor of the whole image, as the network sees it."""
    small = cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_AREA)
    return image_to_tensor(small)


def to_pixels(boxes: Tensor, width: int, height: int) -> Tensor:
    """Normalised xyxy -> pixel xyxy of a ``width`` x ``height`` image, clipped to it."""
    scale = boxes.new_tensor([width, height, width, height])
    return boxes.clamp(0, 1) * scale
