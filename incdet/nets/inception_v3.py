"""Inception-v3 with a width multiplier and the paper's low-resolution (79x79) stem.

torchvision's InceptionA..E hardcode their filter counts, so the blocks are rewritten here
with every count scaled by the width, keeping torchvision's structure and attribute names:
at width 1 a ``torchvision.models.inception_v3`` state dict loads strictly and the main
path computes exactly what torchvision's does.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.inception import BasicConv2d

from incdet.nets.googlenet import ImageNetToUnitRange, check_input, scale_channels


class InceptionV3Outputs(NamedTuple):
    """Training-mode outputs with the auxiliary head: main logits and side-head logits."""

    logits: Tensor
    aux: Tensor


class InceptionA(nn.Module):
    """35x35 module (paper figure 5): the 5x5 conv factorised into two 3x3 convs."""

    def __init__(self, in_channels: int, pool_features: int, width: float) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.branch1x1 = BasicConv2d(in_channels, s(64), kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, s(48), kernel_size=1)
        self.branch5x5_2 = BasicConv2d(s(48), s(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, s(pool_features), kernel_size=1)
        self.out_channels = s(64) + s(64) + s(96) + s(pool_features)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction (paper figure 10): stride-2 convs beside a max pool."""

    def __init__(self, in_channels: int, width: float) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.branch3x3 = BasicConv2d(in_channels, s(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, stride=2)
        self.out_channels = s(384) + s(96) + in_channels

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """17x17 module (paper figure 6): 7x7 convs factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int, width: float) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        c7 = s(channels_7x7)
        self.branch1x1 = BasicConv2d(in_channels, s(192), kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, s(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, s(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, s(192), kernel_size=1)
        self.out_channels = 4 * s(192)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: stride-2 convs beside a max pool."""

    def __init__(self, in_channels: int, width: float) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.branch3x3_1 = BasicConv2d(in_channels, s(192), kernel_size=1)
        self.branch3x3_2 = BasicConv2d(s(192), s(320), kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, s(192), kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(s(192), s(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(s(192), s(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(s(192), s(192), kernel_size=3, stride=2)
        self.out_channels = s(320) + s(192) + in_channels

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 module (paper figure 7): filter banks expanded with parallel 1x3 and 3x1 convs."""

    def __init__(self, in_channels: int, width: float) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.branch1x1 = BasicConv2d(in_channels, s(320), kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, s(384), kernel_size=1)
        self.branch3x3_2a = BasicConv2d(s(384), s(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(s(384), s(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, s(448), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(448), s(384), kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(s(384), s(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(s(384), s(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, s(192), kernel_size=1)
        self.out_channels = s(320) + 4 * s(384) + s(192)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionAux(nn.Module):
    """Side head on the last 17x17 grid (paper figure 8), batch-normalised as the paper recommends.

    torchvision average-pools 5x5 with stride 3, which only yields the 5x5 map its 5x5 conv
    needs on a 17x17 grid; adaptive pooling to 5x5 keeps the head usable for any input size
    (its windows differ slightly from torchvision's; the head is used only in training).
    """

    def __init__(self, in_channels: int, num_classes: int, width: float) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.conv0 = BasicConv2d(in_channels, s(128), kernel_size=1)
        self.conv1 = BasicConv2d(s(128), s(768), kernel_size=5)
        self.fc = nn.Linear(s(768), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.conv0(F.adaptive_avg_pool2d(x, (5, 5))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class InceptionV3(nn.Module):
    """Inception-v3 classifier; expects ImageNet mean/std-normalised RGB, any size >= ``min_input_size``.

    ``low_res`` is the paper's section 9 variant: first conv at stride 1 and no first max
    pool, so a 79x79 input reaches the same 17x17 and 8x8 grids (and nearly the same cost)
    as 299x299 does with the normal stem. The unpadded stem and reduction convs set the
    minimum input: 75 pixels (21 with ``low_res``), below which the 8x8 grid would be empty.
    """

    classifier_layers = ("fc", "AuxLogits.fc")
    aux_prefixes = ("AuxLogits.",)
    DEFAULT_INPUT_SIZE = {False: 299, True: 79}  # keyed by low_res
    MIN_INPUT_SIZE = {False: 75, True: 21}

    def __init__(
        self,
        num_classes: int,
        *,
        width: float = 1.0,
        low_res: bool = False,
        aux_logits: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.min_input_size = self.MIN_INPUT_SIZE[low_res]
        self.aux_logits = aux_logits
        self.transform_input = ImageNetToUnitRange()

        self.Conv2d_1a_3x3 = BasicConv2d(3, s(32), kernel_size=3, stride=1 if low_res else 2)
        self.Conv2d_2a_3x3 = BasicConv2d(s(32), s(32), kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(s(32), s(64), kernel_size=3, padding=1)
        self.maxpool1 = nn.Identity() if low_res else nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(s(64), s(80), kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(s(80), s(192), kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(s(192), pool_features=32, width=width)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, pool_features=64, width=width)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, pool_features=64, width=width)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, width=width)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, channels_7x7=128, width=width)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, channels_7x7=160, width=width)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, channels_7x7=160, width=width)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, channels_7x7=192, width=width)
        self.AuxLogits = InceptionAux(self.Mixed_6e.out_channels, num_classes, width) if aux_logits else None
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, width=width)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, width=width)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, width=width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(self.Mixed_7c.out_channels, num_classes)
        # torchvision's init_weights=True scheme (std 0.1; 0.001 for the side head's classifier).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = 0.001 if self.AuxLogits is not None and m is self.AuxLogits.fc else 0.1
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | InceptionV3Outputs:
        pooled, aux = self.forward_pooled(x)
        logits = self.fc(self.dropout(pooled))
        return InceptionV3Outputs(logits, aux) if aux is not None else logits

    def forward_pooled(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The globally pooled (B, C) features the classifier reads, and the side head's logits
        (None unless training with the side head); region classifiers put a box regressor on them."""
        check_input(x, self.min_input_size, "inception_v3")
        x = self.transform_input(x)
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2, self.Mixed_5b,
                      self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e):  # fmt: skip
            x = layer(x)
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return torch.flatten(self.avgpool(x), 1), aux
