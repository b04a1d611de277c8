"""Top-down crop geometry: person box -> network input, and the way back.

Coordinates are continuous with pixel (i, j) covering [i, i+1) x [j, j+1), the convention of
PIL's affine sampler. In this convention a horizontal flip of an array of width W is exactly
``x -> W - x`` for images and heatmaps alike, so flip-test needs no half-pixel shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CropBox:
    """A possibly rotated box in the image: centre (x, y), size (w, h), rotation in degrees."""

    center: tuple[float, float]
    size: tuple[float, float]
    rotation: float = 0.0


def box_from_bbox(
    bbox: tuple[float, float, float, float], aspect_ratio: float, padding: float = 1.25
) -> CropBox:
    """Expand a COCO ``[x, y, w, h]`` box to the model's aspect ratio (w / h), then pad it."""
    x, y, w, h = bbox
    cx, cy = x + w / 2.0, y + h / 2.0
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return CropBox((cx, cy), (w * padding, h * padding))


def crop_matrix(box: CropBox, output_size: tuple[int, int], flip: bool = False) -> np.ndarray:
    """3x3 matrix mapping image coordinates to crop coordinates of ``output_size`` (w, h).

    The box centre goes to the crop centre, the box is rotated upright by ``box.rotation``
    degrees (counter-clockwise content rotation) and scaled to fill the crop. ``flip`` mirrors
    the crop horizontally.
    """
    out_w, out_h = output_size
    cx, cy = box.center
    bw, bh = box.size
    theta = math.radians(box.rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]], dtype=np.float64)
    scale = np.diag([out_w / bw * (-1 if flip else 1), out_h / bh, 1.0])
    to_center = np.array([[1, 0, out_w / 2], [0, 1, out_h / 2], [0, 0, 1]], dtype=np.float64)
    return to_center @ scale @ rotate @ to_origin


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 (or 2x3) affine matrix to points of shape (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def warp_image(image: Image.Image, matrix: np.ndarray, output_size: tuple[int, int]) -> Image.Image:
    """Sample ``image`` into a crop of ``output_size`` (w, h) through the image->crop ``matrix``."""
    inverse = np.linalg.inv(matrix)
    coeffs = tuple(float(v) for v in inverse[:2].reshape(-1))
    return image.transform(output_size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)


def flip_keypoints_order(keypoints: np.ndarray, flip_permutation: tuple[int, ...]) -> np.ndarray:
    """Rename joints after a horizontal flip: the left wrist becomes the right wrist, etc."""
    return keypoints[..., list(flip_permutation), :]
