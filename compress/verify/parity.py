"""Parity: an artifact against the float model on the same inputs, no labels needed.

Raw output error (max and mean absolute, relative L2) and, what an app sees, keypoint
agreement: both outputs are decoded the same way and compared with OKS (the spec's sigmas,
the person's scale taken as the crop's padded box), plus the joints that move most.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from compress.pose.decode import activate_heatmaps, decode_heatmaps
from compress.pose.spec import PoseSpec

BOX_PADDING = 1.25  # crops are the person box padded 1.25x


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_error: float
    mean_abs_error: float
    relative_l2: float
    keypoint_oks: float  # mean OKS between the float model's keypoints and the artifact's
    mean_keypoint_shift_px: float  # in input pixels
    worst_joints: list[tuple[str, float]]  # (joint, mean shift in input pixels), worst first

    def to_dict(self) -> dict:
        return asdict(self)


def keypoints(outputs: torch.Tensor, spec: PoseSpec) -> np.ndarray:
    """Decoded keypoints (N, K, 2) in input (crop) pixels."""
    heatmaps = activate_heatmaps(outputs.detach().float().numpy(), spec)
    points, _ = decode_heatmaps(heatmaps, spec.decoder)
    return points * spec.heatmap_stride


def parity(reference: torch.Tensor, outputs: torch.Tensor, spec: PoseSpec) -> Parity:
    reference, outputs = reference.float(), outputs.float()
    diff = (outputs - reference).abs()
    ref_points, points = keypoints(reference, spec), keypoints(outputs, spec)
    shift = np.linalg.norm(points - ref_points, axis=-1)  # (N, K)
    h, w = spec.input_size
    area = h * w / BOX_PADDING**2
    sigmas = np.asarray(spec.oks_sigmas)
    oks = np.exp(-(shift**2) / (2 * area * (2 * sigmas) ** 2)).mean(axis=1)
    per_joint = shift.mean(axis=0)
    order = np.argsort(-per_joint)[:3]
    return Parity(
        images=int(reference.shape[0]),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        relative_l2=float((outputs - reference).norm() / reference.norm().clamp_min(1e-12)),
        keypoint_oks=float(oks.mean()),
        mean_keypoint_shift_px=float(shift.mean()),
        worst_joints=[(spec.keypoints[j], float(per_joint[j])) for j in order],
    )
