"""The mobile student: a MobileNetV2 backbone (width multiplier) and a light upsampling head."""

from __future__ import annotations

from torch import Tensor, nn

from compress.errors import ModelError
from compress.models.blocks import ConvBNAct, InvertedResidual, UpsampleHead, make_divisible
from compress.models.registry import register_architecture
from compress.pose.spec import PoseSpec

# (expansion, channels, repeats, first stride) as in MobileNetV2.
MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def check_input_size(spec: PoseSpec, multiple: int, name: str) -> None:
    h, w = spec.input_size
    if h % multiple or w % multiple:
        raise ModelError(
            f"{name} needs input height and width divisible by {multiple}, got {h}x{w}"
        )
    if spec.heatmap_stride != 4:
        raise ModelError(
            f"{name} produces stride-4 heatmaps, the spec asks for stride {spec.heatmap_stride}"
        )


class MobilePose(nn.Module):
    def __init__(
        self, spec: PoseSpec, width: float = 1.0, head_channels: int = 96, head: str = "upsample"
    ) -> None:
        super().__init__()
        check_input_size(spec, 32, "mobilepose")
        cin = make_divisible(32 * width)
        layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2)]
        for expand, channels, repeats, stride in MOBILENET_V2:
            cout = make_divisible(channels * width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.backbone = nn.Sequential(*layers)
        self.head = UpsampleHead(cin, head_channels, spec.num_keypoints, kind=head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


@register_architecture("mobilepose")
def mobilepose(
    spec: PoseSpec, width: float = 1.0, head_channels: int = 96, head: str = "upsample"
) -> nn.Module:
    return MobilePose(spec, width=width, head_channels=head_channels, head=head)
