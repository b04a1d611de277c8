"""Crop geometry, heatmap encoding and decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compress.data.targets import encode_heatmaps
from compress.data.transforms import (
    CropBox,
    apply_matrix,
    box_from_bbox,
    crop_matrix,
    warp_image,
)
from compress.pose.decode import decode_heatmaps, flip_heatmaps, to_image_coordinates
from compress.pose.spec import PoseSpec


def test_box_is_expanded_to_the_aspect_ratio_and_padded() -> None:
    box = box_from_bbox((10, 20, 30, 100), aspect_ratio=0.75, padding=1.25)
    assert box.center == (25.0, 70.0)
    assert box.size == pytest.approx((75 * 1.25, 100 * 1.25))
    wide = box_from_bbox((0, 0, 120, 40), aspect_ratio=0.75, padding=1.0)
    assert wide.size == pytest.approx((120, 160))


def test_crop_matrix_maps_box_to_crop_and_inverts() -> None:
    box = CropBox((100.0, 80.0), (60.0, 80.0), rotation=17.0)
    m = crop_matrix(box, (192, 256))
    assert apply_matrix(m, np.array([100.0, 80.0])) == pytest.approx([96.0, 128.0])
    pts = np.random.default_rng(0).uniform(0, 200, (20, 2))
    back = apply_matrix(np.linalg.inv(m), apply_matrix(m, pts))
    assert np.abs(back - pts).max() < 1e-9
    flipped = crop_matrix(CropBox((100.0, 80.0), (60.0, 80.0)), (192, 256), flip=True)
    plain = crop_matrix(CropBox((100.0, 80.0), (60.0, 80.0)), (192, 256))
    p = np.array([[110.0, 90.0]])
    assert apply_matrix(flipped, p)[0, 0] == pytest.approx(192 - apply_matrix(plain, p)[0, 0])


def test_warp_image_agrees_with_apply_matrix() -> None:
    """A bright pixel lands where the matrix says its centre goes (PIL's pixel convention)."""
    arr = np.zeros((100, 100), np.uint8)
    arr[37, 61] = 255  # centre at (61.5, 37.5)
    m = crop_matrix(CropBox((50.0, 50.0), (50.0, 50.0)), (100, 100))  # 2x zoom
    out = np.asarray(warp_image(Image.fromarray(arr), m, (100, 100)), np.float64)
    ys, xs = np.mgrid[0:100, 0:100]
    centroid = np.array([(out * (xs + 0.5)).sum(), (out * (ys + 0.5)).sum()]) / out.sum()
    assert centroid == pytest.approx(apply_matrix(m, np.array([61.5, 37.5])), abs=0.05)


def test_heatmap_targets_weights_follow_visibility() -> None:
    kps = np.array([[10.2, 20.7], [5.0, 5.0], [60.0, 5.0], [3.0, 4.0]])
    vis = np.array([2, 0, 2, 1])
    hm, w = encode_heatmaps(kps, vis, (64, 48), sigma=2.0)
    assert hm.shape == (4, 64, 48) and hm.dtype == np.float32
    assert list(w) == [1.0, 0.0, 0.0, 1.0]  # unlabelled and out-of-map joints weigh 0
    assert hm[1].max() == 0 and hm[2].max() == 0
    assert hm[0].max() > 0.9


@pytest.mark.parametrize("decoder", ["dark", "quarter_offset"])
def test_encode_decode_recovers_keypoints(decoder: str) -> None:
    rng = np.random.default_rng(1)
    kps = rng.uniform([0, 0], [48, 64], (2000, 2))
    hm, _ = encode_heatmaps(kps, np.full(2000, 2), (64, 48), sigma=2.0)
    coords, scores = decode_heatmaps(hm[None], decoder)
    err = np.linalg.norm(coords[0] - kps, axis=-1)
    border = np.minimum.reduce([kps[:, 0], 48 - kps[:, 0], kps[:, 1], 64 - kps[:, 1]])
    interior = border >= 7  # beyond the reach of DARK's blur
    # DARK is exact for a Gaussian away from the border; a quarter step is off by <= 0.25 per axis.
    assert err[interior].max() < (1e-3 if decoder == "dark" else 0.36)
    assert err.max() < 1.6  # truncated Gaussians at the border still decode to the right pixel
    assert scores[0, interior].min() > 0.88


def test_flip_heatmaps_undo_a_mirrored_input(spec: PoseSpec) -> None:
    rng = np.random.default_rng(2)
    kps = rng.uniform([4, 4], [44, 60], (17, 2))
    h, w = spec.heatmap_size
    mirrored = kps.copy()
    mirrored[:, 0] = w - mirrored[:, 0]
    mirrored = mirrored[list(spec.flip_permutation)]  # the left wrist now looks like a right one
    hm, _ = encode_heatmaps(mirrored, np.full(17, 2), (h, w), 2.0)
    coords, _ = decode_heatmaps(flip_heatmaps(hm[None], spec.flip_permutation))
    assert np.abs(coords[0] - kps).max() < 1e-3


def test_to_image_coordinates_uses_each_sample_matrix() -> None:
    m1 = np.linalg.inv(crop_matrix(CropBox((50.0, 50.0), (96.0, 128.0)), (192, 256)))
    m2 = np.linalg.inv(crop_matrix(CropBox((300.0, 200.0), (48.0, 64.0)), (192, 256)))
    centre = np.array([[[24.0, 32.0]], [[24.0, 32.0]]])  # heatmap centre (stride 4)
    out = to_image_coordinates(centre, np.stack([m1, m2]), heatmap_stride=4)
    assert out[0, 0] == pytest.approx([50.0, 50.0])
    assert out[1, 0] == pytest.approx([300.0, 200.0])


def test_softmax_activation_turns_logits_into_unit_peak_heatmaps(spec: PoseSpec) -> None:
    from compress.pose.decode import activate_heatmaps

    softmax_spec = spec.model_copy(update={"heatmap_activation": "softmax"})
    kps = np.array([[20.3, 30.8]])
    target, _ = encode_heatmaps(kps, np.array([2]), (64, 48), sigma=2.0)
    logits = np.log(np.maximum(target, 1e-12))[None] + 5.0  # any offset: softmax ignores it
    maps = activate_heatmaps(logits, softmax_spec)
    assert maps.max() == pytest.approx(1.0, abs=0.02)  # like an MSE-trained map
    coords, _ = decode_heatmaps(maps)
    assert coords[0, 0] == pytest.approx(kps[0], abs=1e-3)
    # 'none' passes outputs through untouched
    assert np.array_equal(activate_heatmaps(target[None], spec), target[None])
