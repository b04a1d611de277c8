"""Building blocks restricted to operations every export target converts cleanly
(conv, batch norm, ReLU/ReLU6, add, nearest upsample)."""

from __future__ import annotations

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
    """

    def __init__(
        self,
        cin: int,
        channels: int,
        num_keypoints: int,
        kind: str = "upsample",
        stages: int = 3,
        depthwise: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(stages):
            if kind == "upsample":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                if depthwise:
                    layers += [ConvBNAct(cin, cin, 3, groups=cin), ConvBNAct(cin, channels, 1)]
                else:
                    layers.append(ConvBNAct(cin, channels, 3))
            elif kind == "deconv":
                layers += [
                    nn.ConvTranspose2d(cin, channels, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(channels),
                    nn.ReLU6(inplace=True),
                ]
            else:
                raise ValueError(f"head kind must be 'upsample' or 'deconv', got {kind!r}")
            cin = channels
        self.layers = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.layers(x))
