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
        self,
        spec: PoseSpec,
        width: float = 1.0,
        head_channels: int = 96,
        head: str = "upsample",
        skips: bool = True,
    ) -> None:
        super().__init__()
        check_input_size(spec, 32, "mobilepose")
        cin = make_divisible(32 * width)
        layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2)]
        # taps: the last layer at each stride before a downsampling block; the head takes the
        # stride-4, -8 and -16 ones (the last three).
        taps: list[int] = []
        tap_channels: list[int] = []
        for expand, channels, repeats, stride in MOBILENET_V2:
            cout = make_divisible(channels * width)
            if stride == 2:
                taps.append(len(layers) - 1)
                tap_channels.append(cin)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.backbone = nn.Sequential(*layers)
        self.taps = tuple(taps[-3:]) if skips else ()
        skip_channels = tuple(reversed(tap_channels[-3:])) if skips else ()
        self.head = UpsampleHead(
            cin, head_channels, spec.num_keypoints, kind=head, skip_channels=skip_channels
        )

    def forward(self, x: Tensor) -> Tensor:
        features: list[Tensor] = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.taps:
                features.append(x)
        return self.head(x, features[::-1])


@register_architecture("mobilepose")
def mobilepose(
    spec: PoseSpec,
    width: float = 1.0,
    head_channels: int = 96,
    head: str = "upsample",
    skips: bool = True,
) -> nn.Module:
    return MobilePose(spec, width=width, head_channels=head_channels, head=head, skips=skips)
