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
        self.head = UpsampleHead(cin, head_channels, spec.num_keypoints, kind=head, depthwise=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))


@register_architecture("respose")
def respose(
    spec: PoseSpec,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    depths: tuple[int, ...] = (2, 2, 2, 2),
    head_channels: int = 128,
    head: str = "upsample",
) -> nn.Module:
    return ResPose(spec, tuple(widths), tuple(depths), head_channels, head)
