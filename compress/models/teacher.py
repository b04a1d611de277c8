"""The teacher: a ResNet-style backbone with a full-convolution upsampling head."""

from __future__ import annotations

from torch import Tensor, nn

from compress.models.blocks import BasicBlock, UpsampleHead
from compress.models.registry import register_architecture
from compress.models.student import check_input_size
from compress.pose.spec import PoseSpec


class ResPose(nn.Module):
    def __init__(
        self,
        spec: PoseSpec,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        depths: tuple[int, ...] = (2, 2, 2, 2),
        head_channels: int = 128,
        head: str = "upsample",
        skips: bool = True,
    ) -> None:
        super().__init__()
        check_input_size(spec, 32, "respose")
        stem = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, 2, 3, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        cin = stem
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = [BasicBlock(cin, width, 1 if i == 0 else 2)]
            blocks += [BasicBlock(width, width, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        # Stage outputs at strides 16, 8 and 4 feed the head's skip connections, deepest first.
        skip_channels = tuple(reversed(widths[-4:-1])) if skips else ()
        self.head = UpsampleHead(
            cin,
            head_channels,
            spec.num_keypoints,
            kind=head,
            depthwise=False,
            skip_channels=skip_channels,
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        features: list[Tensor] = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        skips = features[:-1][::-1][: len(self.head.laterals)]
        return self.head(x, skips)


@register_architecture("respose")
def respose(
    spec: PoseSpec,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    depths: tuple[int, ...] = (2, 2, 2, 2),
    head_channels: int = 128,
    head: str = "upsample",
    skips: bool = True,
) -> nn.Module:
    return ResPose(spec, tuple(widths), tuple(depths), head_channels, head, skips)
