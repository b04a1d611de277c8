"""Metrics against values worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from compress.data.coco import load_coco
from compress.pose.metrics import (
    Predictions,
    coco_keypoint_ap,
    coco_results,
    pck,
    pcp,
    pdj,
    score_predictions,
    torso_normalizers,
)
from compress.pose.spec import PoseSpec


def _person(origin: tuple[float, float]) -> np.ndarray:
    """17 labelled joints; left_shoulder (5) to right_hip (12) is 30 x 40: torso diameter 50."""
    gt = np.zeros((17, 3))
    gt[:, 0] = origin[0] + np.arange(17) * 3.0
    gt[:, 1] = origin[1] + np.arange(17) * 4.0
    gt[5, :2] = origin
    gt[12, :2] = (origin[0] + 30, origin[1] + 40)
    gt[:, 2] = 2
    return gt


def test_pck_pdj_pcp_by_hand(spec: PoseSpec) -> None:
    gt = np.stack([_person((100, 100)), _person((300, 50))])
    boxes = np.array([[0, 0, 60, 80], [0, 0, 60, 80]], dtype=float)  # diagonal 100
    shifts = np.array([3.0] * 5 + [7.0] * 6 + [15.0] * 6)  # px, along x
    pred = gt[..., :2].copy()
    pred[..., 0] += shifts
    norm = torso_normalizers(gt, boxes, spec.torso_indices)
    assert list(norm) == [50.0, 50.0]
    # PCK@0.2 x 50 = 10 px: the 3 and 7 px joints are right, 11 of 17.
    overall, per_joint = pck(pred, gt, norm, 0.2)
    assert overall == pytest.approx(11 / 17)
    assert list(per_joint) == [1.0] * 11 + [0.0] * 6
    # PDJ@0.05 x diagonal 100 = 5 px: only the 3 px joints, 5 of 17.
    assert pdj(pred, gt, boxes, 0.05) == pytest.approx(5 / 17)


def test_pcp_by_hand() -> None:
    gt = np.array([[[0.0, 0.0, 2], [0.0, 20.0, 2], [0.0, 40.0, 2]]])
    pred = gt[..., :2] + np.array([[[3.0, 0.0], [9.0, 0.0], [11.0, 0.0]]])
    limbs = [(0, 1), (1, 2)]  # both 20 long: each end must be within 10 px
    assert pcp(pred, gt, limbs, 0.5) == pytest.approx(0.5)
    gt[0, 2, 2] = 0  # an unlabelled end drops its limb from the count
    assert pcp(pred, gt, limbs, 0.5) == pytest.approx(1.0)


def test_unlabelled_joints_do_not_count(spec: PoseSpec) -> None:
    gt = _person((0, 0))[None]
    gt[0, :8, 2] = 0
    pred = gt[..., :2].copy()
    pred[0, :8] += 1000  # wildly wrong but unlabelled
    overall, per_joint = pck(pred, gt, np.array([50.0]), 0.2)
    assert overall == 1.0
    assert all(math.isnan(v) for v in per_joint[:8])


def test_torso_fallback_uses_box_size_times_median_ratio(spec: PoseSpec) -> None:
    with_torso = _person((0, 0))
    without = _person((0, 0))
    without[[5, 12], 2] = 0
    boxes = np.array([[0, 0, 100, 80], [0, 0, 40, 60]], dtype=float)
    norm = torso_normalizers(np.stack([with_torso, without]), boxes, spec.torso_indices)
    assert list(norm) == pytest.approx([50.0, 0.5 * 60])


def _coco_file(tmp_path: Path, spec: PoseSpec, people: list[np.ndarray], area: float) -> Path:
    data = {
        "images": [
            {"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 480}
            for i in range(len(people))
        ],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [0, 0, 100, 100],
                "area": area,
                "num_keypoints": 17,
                "keypoints": [float(v) for v in p.reshape(-1)],
            }
            for i, p in enumerate(people)
        ],
        "categories": [spec.to_coco_category()],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def test_cocoeval_ground_truth_is_perfect_and_a_perturbed_copy_is_not(
    tmp_path: Path, spec: PoseSpec
) -> None:
    people = [_person((100, 100)), _person((200, 150))]
    area = 10_000.0
    coco = load_coco(_coco_file(tmp_path, spec, people, area))
    ids = np.array([1, 2])

    def predictions(kps: np.ndarray, scores: np.ndarray) -> Predictions:
        return Predictions(ids, ids, kps, scores, np.stack(people), np.zeros((2, 4)))

    exact = np.stack([p[:, :2] for p in people])
    stats = coco_keypoint_ap(
        coco, coco_results(predictions(exact, np.ones((2, 17)))), spec.oks_sigmas, ids
    )
    assert stats["ap"] == pytest.approx(1.0) and stats["ar"] == pytest.approx(1.0)

    # Move every joint of person 2 so that exp(-d^2 / (2 area (2 sigma)^2)) = 0.72 for each:
    # its OKS is 0.72, a match at thresholds 0.50..0.70 and a miss at 0.75..0.95.
    sigmas = np.asarray(spec.oks_sigmas)
    d = np.sqrt(-2 * area * (2 * sigmas) ** 2 * np.log(0.72))
    perturbed = exact.copy()
    perturbed[1, :, 0] += d
    scores = np.stack([np.ones(17), np.full(17, 0.5)])  # the exact person ranks first
    stats = coco_keypoint_ap(
        coco, coco_results(predictions(perturbed, scores)), spec.oks_sigmas, ids
    )
    # 5 thresholds with AP 1; 5 where recall stops at 0.5 with precision 1: 51 of 101 points.
    assert stats["ap"] == pytest.approx((5 * 1.0 + 5 * 51 / 101) / 10, abs=1e-6)
    assert stats["ap50"] == pytest.approx(1.0)
    assert stats["ap75"] == pytest.approx(51 / 101, abs=1e-6)
    assert stats["ar"] == pytest.approx(0.75)


def test_score_predictions_reports_per_joint(tmp_path: Path, spec: PoseSpec) -> None:
    people = [_person((100, 100)), _person((200, 150))]
    coco = load_coco(_coco_file(tmp_path, spec, people, 10_000.0))
    ids = np.array([1, 2])
    kps = np.stack([p[:, :2] for p in people])
    kps[:, spec.index("left_wrist"), 1] += 4.0
    metrics = score_predictions(
        Predictions(
            ids, ids, kps, np.ones((2, 17)), np.stack(people), np.array([[0, 0, 60, 80]] * 2, float)
        ),
        coco,
        spec,
    )
    assert metrics.per_joint["left_wrist"].mean_error_px == pytest.approx(4.0)
    assert metrics.per_joint["nose"].mean_error_px == pytest.approx(0.0)
    assert metrics.per_joint["left_wrist"].labelled == 2
    assert metrics.num_people == 2 and metrics.num_images == 2
    assert metrics.pck == 1.0
    assert json.dumps(metrics.to_dict())  # serialisable
