"""GoogLeNet (Inception-v1) with a width multiplier and the low-resolution stem.

Built from torchvision's own ``Inception`` and ``BasicConv2d`` blocks, under torchvision's
attribute names, so that at width 1 a ``torchvision.models.googlenet`` state dict loads
strictly. That also means torchvision's deviations from the paper come along: every conv is
followed by batch norm (and has no bias), and the "5x5" branch is a 3x3 conv
(pytorch/vision#906, 0.38M parameters fewer). Without side heads the network has 6.62M
parameters and 1.50G multiply-adds at 224x224; the paper lists about 6.8M and 1.5G.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.googlenet import BasicConv2d, Inception

from incdet.transforms import IMAGENET_MEAN, IMAGENET_STD

# The GoogLeNet table (paper table 1, torchvision's numbers): for each Inception module
# #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest multiple of 8 (ties up), at least 8.

    Multiples of 8 keep convolutions on fast kernel paths; the floor of 8 stops the thin
    5x5-reduce layers (16 or 24 filters) from vanishing at small widths. Every entry of the
    GoogLeNet and Inception-v3 tables is a multiple of 8, so width 1 reproduces them exactly.
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(8, int(channels * width / 8 + 0.5) * 8)


class ImageNetToUnitRange(nn.Module):
    """Maps ImageNet mean/std-normalised RGB to (pixel - 0.5) / 0.5, i.e. [0, 1] pixels to [-1, 1].

    Stored as non-persistent buffers so torchvision state dicts still load strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", std / 0.5, persistent=False)
        self.register_buffer("shift", (mean - 0.5) / 0.5, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def check_input(x: Tensor, min_size: int, name: str) -> None:
    """Refuse what the network cannot (or, below its total stride, should not) classify."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} expects a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
    if min(x.shape[2], x.shape[3]) < min_size:
        raise ValueError(
            f"{name} needs inputs of at least {min_size}x{min_size} pixels, got {x.shape[3]}x{x.shape[2]}"
        )


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs with auxiliary heads: main logits and both side-head logits."""

    logits: Tensor
    aux1: Tensor
    aux2: Tensor


class GoogLeNetAux(nn.Module):
    """The paper's side classifier: 4x4 average pool, 1x1 conv, FC + ReLU, dropout 0.7, linear.

    torchvision's ``InceptionAux`` hardcodes 128 filters and 1024 units; this one scales
    them with the width and keeps its attribute names (conv, fc1, fc2) for state-dict loading.
    """

    def __init__(self, in_channels: int, num_classes: int, width: float) -> None:
        super().__init__()
        reduced, hidden = scale_channels(128, width), scale_channels(1024, width)
        self.conv = BasicConv2d(in_channels, reduced, kernel_size=1)
        self.fc1 = nn.Linear(reduced * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(p=0.7)

    def forward(self, x: Tensor) -> Tensor:
        # Adaptive to 4x4 (as torchvision) so the head works for any grid, not only 14x14.
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """Inception-v1 classifier; expects ImageNet mean/std-normalised RGB, any size >= ``min_input_size``.

    ``low_res`` follows Inception-v3 section 9: conv1 at stride 1 and no maxpool1, so a
    56x56 input gets the same grids (and nearly the cost) as 224x224 with the normal stem.
    The minimum input is the total stride (32, or 8 with ``low_res``): the smallest input
    whose last Inception grid still has one cell computed from real pixels; smaller inputs
    would run only on padding and ceil-mode pooling borders.
    """

    classifier_layers = ("fc", "aux1.fc2", "aux2.fc2")
    aux_prefixes = ("aux1.", "aux2.")
    DEFAULT_INPUT_SIZE = {False: 224, True: 56}  # keyed by low_res
    MIN_INPUT_SIZE = {False: 32, True: 8}

    def __init__(
        self,
        num_classes: int,
        *,
        width: float = 1.0,
        low_res: bool = False,
        aux_logits: bool = False,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.min_input_size = self.MIN_INPUT_SIZE[low_res]
        self.aux_logits = aux_logits
        self.transform_input = ImageNetToUnitRange()

        self.conv1 = BasicConv2d(3, s(64), kernel_size=7, stride=1 if low_res else 2, padding=3)
        self.maxpool1 = nn.Identity() if low_res else nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(s(64), s(64), kernel_size=1)
        self.conv3 = BasicConv2d(s(64), s(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels, out_channels = s(192), {}
        for name, table in INCEPTION_TABLE.items():
            ch1x1, ch3red, ch3, ch5red, ch5, pool = (s(c) for c in table)
            setattr(self, name, Inception(channels, ch1x1, ch3red, ch3, ch5red, ch5, pool))
            channels = out_channels[name] = ch1x1 + ch3 + ch5 + pool
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.aux1 = GoogLeNetAux(out_channels["inception4a"], num_classes, width) if aux_logits else None
        self.aux2 = GoogLeNetAux(out_channels["inception4d"], num_classes, width) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        # torchvision's init_weights=True scheme, so from-scratch training matches torchvision.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        pooled, aux1, aux2 = self.forward_pooled(x)
        logits = self.fc(self.dropout(pooled))
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits

    def forward_pooled(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The globally pooled (B, C) features the classifier reads, and the side heads' logits
        (None unless training with side heads); region classifiers put a box regressor on them."""
        check_input(x, self.min_input_size, "googlenet")
        x = self.transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return torch.flatten(self.avgpool(x), 1), aux1, aux2
