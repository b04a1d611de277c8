"""Gaussian heatmap targets for top-down pose training.

The Gaussian is centred on the exact sub-pixel keypoint position (unbiased encoding, as DARK
recommends), so that encoding followed by decoding returns the keypoint, not its rounding.
"""

from __future__ import annotations

import numpy as np


def encode_heatmaps(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    heatmap_size: tuple[int, int],
    sigma: float,
    joint_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (K, H, W) and per-joint loss weights (K,) for keypoints in heatmap coordinates.

    ``keypoints`` is (K, 2) in continuous heatmap coordinates (pixel k's centre at k + 0.5);
    ``visibility`` is the COCO flag (0 unlabelled, 1 labelled but hidden, 2 visible). A joint
    gets weight 0, and an empty map, when it is unlabelled or falls outside the heatmap.
    """
    height, width = heatmap_size
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    x = keypoints[:, 0].astype(np.float32)
    y = keypoints[:, 1].astype(np.float32)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    weights = ((visibility > 0) & inside).astype(np.float32)
    if joint_weights is not None:
        weights = weights * joint_weights.astype(np.float32)
    gx = np.exp(-((xs[None, :] - x[:, None]) ** 2) / (2 * sigma**2))  # (K, W)
    gy = np.exp(-((ys[None, :] - y[:, None]) ** 2) / (2 * sigma**2))  # (K, H)
    heatmaps = gy[:, :, None] * gx[:, None, :]
    heatmaps *= (weights > 0).astype(np.float32)[:, None, None]
    return heatmaps.astype(np.float32), weights
