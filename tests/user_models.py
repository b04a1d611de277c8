"""A user's own network, as a user would write it: any keypoint count, any input size."""

from __future__ import annotations

import torch
from torch import nn

from compress.pose.spec import PoseSpec


class TinyPose(nn.Module):
    def __init__(self, spec: PoseSpec, channels: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(channels, spec.num_keypoints, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def tiny_pose(spec: PoseSpec, channels: int = 8) -> nn.Module:
    return TinyPose(spec, channels)


def raises(spec: PoseSpec) -> nn.Module:
    raise RuntimeError("the user's builder failed")


def not_a_module(spec: PoseSpec) -> str:
    return "oops"


class HeadFirst(nn.Module):
    """Registers its heatmap layer before its body: the output layer is not the last one."""

    def __init__(self, spec: PoseSpec) -> None:
        super().__init__()
        self.head = nn.Conv2d(16, spec.num_keypoints, 1)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU()
        )
        self.extra = nn.Conv2d(16, 16, 1)  # registered last, but feeds nothing to the output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def head_first(spec: PoseSpec) -> nn.Module:
    return HeadFirst(spec)


class SpectralPose(nn.Module):
    """Uses a 2D FFT, which ONNX takes but TFLite and Core ML do not."""

    def __init__(self, spec: PoseSpec) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, spec.num_keypoints, 4, 4)
        self.mix = nn.Conv2d(spec.num_keypoints, spec.num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.mix(y) + torch.fft.rfft2(y, norm="ortho").abs().mean() * 0


def spectral_pose(spec: PoseSpec) -> nn.Module:
    return SpectralPose(spec)


def wrong_shape(spec: PoseSpec) -> nn.Module:
    """Forgets the heatmap layer: 8 channels out instead of one per keypoint."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1))
