"""Heatmaps to keypoints.

Works on numpy arrays so the same code decodes PyTorch, LiteRT, ONNX Runtime and Core ML
outputs. Positions are continuous heatmap coordinates (pixel k's centre at k + 0.5); map them
to image coordinates with :func:`to_image_coordinates`.
"""

from __future__ import annotations

import numpy as np

from compress.data.transforms import apply_matrix
from compress.pose.spec import Decoder, HeatmapActivation, PoseSpec


def activate_heatmaps(outputs: np.ndarray, spec: PoseSpec) -> np.ndarray:
    """Raw network outputs (N, K, H, W) to heatmaps, as ``spec.heatmap_activation`` says.

    Softmax maps are scaled by 2 pi sigma^2, the inverse peak of a normalised Gaussian target,
    so a confident prediction peaks near 1 like an MSE-trained map and confidences compare.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if HeatmapActivation(spec.heatmap_activation) is HeatmapActivation.NONE:
        return outputs
    n, k, h, w = outputs.shape
    flat = outputs.reshape(n, k, h * w)
    flat = np.exp(flat - flat.max(axis=-1, keepdims=True))
    flat /= flat.sum(axis=-1, keepdims=True)
    return (flat * (2 * np.pi * spec.heatmap_sigma**2)).reshape(n, k, h, w)


def decode_heatmaps(
    heatmaps: np.ndarray, decoder: Decoder | str = Decoder.DARK, blur_sigma: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in heatmap coordinates and confidences (N, K) from (N, K, H, W).

    DARK blurs the maps (``blur_sigma``, heatmap pixels) to tame noisy network outputs before
    the Taylor step. Away from the map border it recovers a Gaussian's centre exactly; within
    two pixels of the border the truncated Gaussian biases it by up to about one pixel.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W), got shape {heatmaps.shape}")
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    best = flat.argmax(axis=-1)
    scores = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    iy, ix = np.divmod(best, w)
    coords = np.stack([ix, iy], axis=-1).astype(np.float32) + 0.5

    decoder = Decoder(decoder)
    if decoder is Decoder.QUARTER_OFFSET:
        coords += _quarter_offsets(heatmaps, ix, iy)
    else:
        coords += _dark_offsets(heatmaps, ix, iy, blur_sigma)
    return coords, scores


def _quarter_offsets(heatmaps: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    n, k = heatmaps.shape[:2]
    padded = np.pad(heatmaps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    px, py = ix + 1, iy + 1
    dx = padded[ni, ki, py, px + 1] - padded[ni, ki, py, px - 1]
    dy = padded[ni, ki, py + 1, px] - padded[ni, ki, py - 1, px]
    return 0.25 * np.stack([np.sign(dx), np.sign(dy)], axis=-1).astype(np.float32)


def _gaussian_blur(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur per map, rescaled so each map keeps its original maximum."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    pad = ((0, 0), (0, 0), (radius, radius), (radius, radius))
    # Edge padding biases border peaks least among the paddings we measured.
    padded = np.pad(heatmaps, pad, mode="edge")
    h, w = heatmaps.shape[-2:]
    rows = sum(taps[i] * padded[..., :, i : i + w] for i in range(2 * radius + 1))
    blurred = sum(taps[i] * rows[..., i : i + h, :] for i in range(2 * radius + 1))
    peak_before = heatmaps.max(axis=(-2, -1), keepdims=True)
    peak_after = np.maximum(blurred.max(axis=(-2, -1), keepdims=True), 1e-12)
    return blurred * (peak_before / peak_after)


def _dark_offsets(
    heatmaps: np.ndarray, ix: np.ndarray, iy: np.ndarray, blur_sigma: float
) -> np.ndarray:
    """Second-order Taylor step on the log of the blurred heatmap at the arg-max."""
    n, k = heatmaps.shape[:2]
    logmap = np.log(np.maximum(_gaussian_blur(heatmaps, blur_sigma), 1e-10))
    padded = np.pad(logmap, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    px, py = ix + 2, iy + 2

    def at(dx: int, dy: int) -> np.ndarray:
        return padded[ni, ki, py + dy, px + dx]

    center = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * center + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * center + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    # A peak is a maximum: the Hessian must be negative definite, else the step is meaningless.
    valid = (det > 1e-9) & (hxx < 0)
    safe_det = np.where(valid, det, 1.0)
    off_x = -(hyy * gx - hxy * gy) / safe_det
    off_y = -(hxx * gy - hxy * gx) / safe_det
    offsets = np.stack([off_x, off_y], axis=-1) * valid[..., None]
    return np.clip(offsets, -1.0, 1.0).astype(np.float32)


def flip_heatmaps(heatmaps: np.ndarray, flip_permutation: tuple[int, ...]) -> np.ndarray:
    """Heatmaps of a horizontally flipped input, brought back to the unflipped frame."""
    return np.asarray(heatmaps)[:, list(flip_permutation), :, ::-1]


def to_image_coordinates(
    keypoints: np.ndarray, crop_to_image: np.ndarray, heatmap_stride: int
) -> np.ndarray:
    """Heatmap coordinates (N, K, 2) to image coordinates, given per-sample (N, 3, 3) matrices."""
    crop_points = np.asarray(keypoints, dtype=np.float64) * heatmap_stride
    return np.stack(
        [apply_matrix(m, pts) for m, pts in zip(crop_to_image, crop_points, strict=True)]
    )
