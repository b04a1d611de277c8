"""Building blocks restricted to operations every export target converts cleanly
(conv, batch norm, ReLU/ReLU6, add, nearest upsample)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNAct(nn.Sequential):
    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ residual)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNAct(cin, hidden, 1)]
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            ConvBNAct(hidden, cout, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class BasicBlock(nn.Module):
    """ResNet basic block with a projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class UpsampleHead(nn.Module):
    """Stride-32 features to stride-4 heatmaps: 3 x (nearest 2x, then a depthwise-separable or
    full 3x3 convolution).

    ``kind='deconv'`` uses 4x4 transposed convolutions instead, the SimpleBaseline head.
    ``skip_channels`` lists the channels of the backbone's stride-16, -8 and -4 features
    (deepest first): each is projected by a 1x1 convolution and added after the matching 2x
    upsampling, as in U-Net and FPN, so the head sees fine detail the stride-32 features lost.
    """

    def __init__(
        self,
        cin: int,
        channels: int,
        num_keypoints: int,
        kind: str = "upsample",
        stages: int = 3,
        depthwise: bool = True,
        skip_channels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if kind not in ("upsample", "deconv"):
            raise ValueError(f"head kind must be 'upsample' or 'deconv', got {kind!r}")
        if len(skip_channels) > stages:
            raise ValueError(f"{len(skip_channels)} skip inputs for {stages} upsampling stages")
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.laterals = nn.ModuleList()
        for i in range(stages):
            if kind == "upsample":
                self.ups.append(nn.Upsample(scale_factor=2, mode="nearest"))
                width = cin
            else:
                self.ups.append(
                    nn.Sequential(
                        nn.ConvTranspose2d(cin, channels, 4, 2, 1, bias=False),
                        nn.BatchNorm2d(channels),
                        nn.ReLU6(inplace=True),
                    )
                )
                width = channels
            if i < len(skip_channels):
                self.laterals.append(ConvBNAct(skip_channels[i], width, 1, act=False))
            if kind == "deconv":
                self.convs.append(nn.Identity())
            elif depthwise:
                self.convs.append(
                    nn.Sequential(
                        ConvBNAct(width, width, 3, groups=width), ConvBNAct(width, channels, 1)
                    )
                )
            else:
                self.convs.append(ConvBNAct(width, channels, 3))
            cin = channels
        self.final = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, x: Tensor, skips: Sequence[Tensor] = ()) -> Tensor:
        """``x`` is the deepest feature map, ``skips`` the finer ones, deepest first."""
        for i, (up, conv) in enumerate(zip(self.ups, self.convs, strict=True)):
            x = up(x)
            if i < len(self.laterals):
                x = x + self.laterals[i](skips[i])
            x = conv(x)
        return self.final(x)
