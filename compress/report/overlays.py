"""The report's grid of val crops with the float model's and each artifact's skeletons drawn
over them: what an accuracy drop looks like on real inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from compress.pose.spec import PoseSpec

FLOAT_COLOR, ARTIFACT_COLOR = "#1f77b4", "#d62728"


def crops_as_pixels(images: torch.Tensor, spec: PoseSpec) -> np.ndarray:
    """Network input batch (N, 3, H, W), normalised, back to displayable RGB uint8 (N, H, W, 3)."""
    norm = spec.normalization
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    pixels = (images.float() * std + mean).clamp(0, 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    return pixels[..., ::-1] if norm.color_order == "BGR" else pixels


def _draw(ax, points: np.ndarray, edges: list[tuple[int, int]], color: str, style: str) -> None:
    for a, b in edges:
        ax.plot(points[[a, b], 0], points[[a, b], 1], color=color, linewidth=1.4, linestyle=style)
    ax.scatter(points[:, 0], points[:, 1], s=6, color=color, zorder=3)


def overlay_grid(crops: np.ndarray, verification: dict[str, Any], spec: PoseSpec):
    """A matplotlib figure: one row per crop, one column per artifact; each panel shows the
    float model's skeleton (blue, dashed) and the artifact's (red). None without examples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    float_points = np.asarray(verification["float"].get("example_keypoints") or [])
    rows = [r for r in verification.get("artifacts", []) if r.get("example_keypoints")]
    if not len(float_points) or not rows:
        return None
    count = min(len(crops), len(float_points))
    index = {name: i for i, name in enumerate(spec.keypoints)}
    edges = [(index[a], index[b]) for a, b in spec.skeleton]
    h, w = crops.shape[1:3]
    size = 1.6
    fig, axes = plt.subplots(
        count, len(rows), figsize=(size * len(rows) * w / h, size * count), squeeze=False
    )
    for i in range(count):
        for j, row in enumerate(rows):
            ax = axes[i][j]
            ax.imshow(crops[i])
            _draw(ax, float_points[i], edges, FLOAT_COLOR, "--")
            _draw(ax, np.asarray(row["example_keypoints"][i]), edges, ARTIFACT_COLOR, "-")
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(row["target"], fontsize=8)
    fig.suptitle("Val crops: float model (blue, dashed) and artifact (red)", fontsize=9)
    fig.tight_layout()
    return fig
