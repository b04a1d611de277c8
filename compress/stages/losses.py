"""Heatmap losses."""

from __future__ import annotations

import torch


def heatmap_mse(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error per joint map, weighted per joint (0 for unlabelled joints).

    Scaled by 1000 so typical values are O(1): Adam does not care, logs read better.
    """
    per_joint = ((pred - target) ** 2).mean(dim=(2, 3))
    if weights is not None:
        per_joint = per_joint * weights
    return per_joint.mean() * 1000.0
