"""Pose accuracy: one ``evaluate`` for every model and runtime.

* OKS-AP/AR come from pycocotools' COCOeval, the reference implementation, with the spec's
  OKS sigmas.
* PCK@alpha: a joint is correct when its error is below alpha times the torso diameter (the
  distance between the spec's two torso keypoints). A person whose torso is not labelled is
  normalised by its box size times the dataset's median torso-to-box ratio, so the fallback
  keeps the same scale.
* PDJ@alpha: a joint is detected when its error is below alpha times the box diagonal (the
  box-diagonal variant; Toshev & Szegedy normalise by the torso, which PCK already does).
* AP is scored on ground-truth person boxes (top-down, no detector), so it measures the pose
  network alone and is higher than detector-based COCO leaderboard AP.
* PCP@alpha (strict): a limb is correct when both its ends are within alpha times the limb's
  true length.

Only labelled joints (visibility > 0) count.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from compress.data.coco import PIXEL_CENTER
from compress.errors import DataError
from compress.pose.decode import (
    activate_heatmaps,
    decode_heatmaps,
    flip_heatmaps,
    to_image_coordinates,
)
from compress.pose.spec import PoseSpec

Predict = Callable[[torch.Tensor], "np.ndarray | torch.Tensor"]


@dataclass(frozen=True)
class Predictions:
    """Keypoints of every evaluated person, in image coordinates."""

    image_ids: np.ndarray  # (N,)
    annotation_ids: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, K, 2)
    scores: np.ndarray  # (N, K) per-joint confidence
    ground_truth: np.ndarray  # (N, K, 3)
    boxes: np.ndarray  # (N, 4) COCO xywh


@dataclass
class JointMetrics:
    pck: float
    mean_error_px: float
    labelled: int


@dataclass
class PoseMetrics:
    ap: float
    ap50: float
    ap75: float
    ap_medium: float
    ap_large: float
    ar: float
    ar50: float
    ar75: float
    pck: float
    pdj: float
    pcp: float
    pck_alpha: float
    pdj_alpha: float
    pcp_alpha: float
    num_people: int
    num_images: int
    per_joint: dict[str, JointMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ----- distance-based metrics ----------------------------------------------------------------
def joint_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean errors (N, K) and the mask of labelled joints (N, K)."""
    errors = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    return errors, gt[..., 2] > 0


def torso_normalizers(
    gt: np.ndarray, boxes: np.ndarray, torso: tuple[int, int] | None
) -> np.ndarray:
    """Torso diameter per person, with the scaled box-size fallback described above."""
    box_size = np.maximum(boxes[:, 2], boxes[:, 3])
    if torso is None:
        return box_size
    a, b = torso
    has_torso = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
    diameter = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=-1)
    ratio = 1.0
    valid = has_torso & (box_size > 0) & (diameter > 0)
    if valid.any():
        ratio = float(np.median(diameter[valid] / box_size[valid]))
    return np.where(valid, diameter, box_size * ratio)


def pck(
    pred: np.ndarray, gt: np.ndarray, normalizer: np.ndarray, alpha: float
) -> tuple[float, np.ndarray]:
    """Overall PCK and per-joint PCK (NaN for a joint never labelled)."""
    errors, labelled = joint_errors(pred, gt)
    correct = (errors <= alpha * normalizer[:, None]) & labelled
    per_joint = np.divide(
        correct.sum(0), labelled.sum(0), out=np.full(gt.shape[1], np.nan), where=labelled.sum(0) > 0
    )
    overall = float(correct.sum() / max(labelled.sum(), 1))
    return overall, per_joint


def pdj(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray, alpha: float) -> float:
    diagonal = np.hypot(boxes[:, 2], boxes[:, 3])
    return pck(pred, gt, diagonal, alpha)[0]


def pcp(pred: np.ndarray, gt: np.ndarray, limbs: Iterable[tuple[int, int]], alpha: float) -> float:
    errors, labelled = joint_errors(pred, gt)
    correct = total = 0
    for a, b in limbs:
        both = labelled[:, a] & labelled[:, b]
        length = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=-1)
        ok = (errors[:, a] <= alpha * length) & (errors[:, b] <= alpha * length) & both
        correct += int(ok.sum())
        total += int(both.sum())
    return correct / max(total, 1)


# ----- COCO OKS ------------------------------------------------------------------------------
def coco_results(
    predictions: Predictions, category_id: int = 1, score_threshold: float = 0.2
) -> list[dict]:
    """COCO result entries; a person's score is the mean confidence of its confident joints.

    Keypoints go back to COCO's pixel-index convention (see compress.data.coco).
    """
    results = []
    for image_id, kps, scores in zip(
        predictions.image_ids, predictions.keypoints, predictions.scores, strict=True
    ):
        confident = scores[scores > score_threshold]
        score = float(confident.mean()) if confident.size else 0.0
        flat = np.concatenate([kps - PIXEL_CENTER, scores[:, None]], axis=1).reshape(-1)
        results.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [float(v) for v in flat],
                "score": score,
            }
        )
    return results


def coco_keypoint_ap(
    coco_gt: COCO, results: list[dict], sigmas: Iterable[float], image_ids: Iterable[int]
) -> dict[str, float]:
    """OKS-AP/AR through COCOeval; keys follow COCO's summary lines."""
    if not results:
        raise DataError("no predictions to score: the split has no annotated people")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(list(sigmas), dtype=np.float64)
        evaluator.params.imgIds = sorted({int(i) for i in image_ids})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    names = (
        "ap",
        "ap50",
        "ap75",
        "ap_medium",
        "ap_large",
        "ar",
        "ar50",
        "ar75",
        "ar_medium",
        "ar_large",
    )
    # COCOeval reports -1 where an area range has no people; keep that as NaN.
    return {
        n: (float(v) if v >= 0 else float("nan"))
        for n, v in zip(names, evaluator.stats, strict=True)
    }


# ----- the one evaluation entry point --------------------------------------------------------
def predict_keypoints(
    dataset,
    heatmaps_for_batch: Callable[[dict], np.ndarray | torch.Tensor],
    batch_size: int = 32,
    num_workers: int = 0,
) -> Predictions:
    """Run ``heatmaps_for_batch`` over the dataset and decode to image coordinates."""
    spec: PoseSpec = dataset.spec
    if getattr(dataset, "augment", None) is not None:
        raise ValueError("evaluation needs a dataset without augmentation (augment=None)")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    parts: dict[str, list] = {k: [] for k in ("ids", "anns", "kps", "scores", "gt", "boxes")}
    for batch in loader:
        heatmaps = _to_numpy(heatmaps_for_batch(batch))
        expected = (len(batch["image"]), spec.num_keypoints, *spec.heatmap_size)
        if tuple(heatmaps.shape) != expected:
            raise DataError(f"model output has shape {tuple(heatmaps.shape)}, expected {expected}")
        # DARK blur scaled to the target Gaussian (1.5 px for the usual sigma of 2).
        coords, scores = decode_heatmaps(
            heatmaps, spec.decoder, blur_sigma=spec.heatmap_sigma * 0.75
        )
        image_coords = to_image_coordinates(
            coords, batch["crop_to_image"].numpy(), spec.heatmap_stride
        )
        parts["ids"].append(batch["image_id"].numpy())
        parts["anns"].append(batch["annotation_id"].numpy())
        parts["kps"].append(image_coords)
        parts["scores"].append(scores)
        parts["gt"].append(batch["keypoints"].numpy())
        parts["boxes"].append(batch["bbox"].numpy())
    if not parts["ids"]:
        raise DataError(f"{dataset.split.annotation_file}: the split has no annotated people")
    return Predictions(
        *(np.concatenate(parts[k]) for k in ("ids", "anns", "kps", "scores", "gt", "boxes"))
    )


def score_predictions(
    predictions: Predictions,
    coco_gt: COCO,
    spec: PoseSpec,
    category_id: int = 1,
    pck_alpha: float = 0.2,
    pdj_alpha: float = 0.05,
    pcp_alpha: float = 0.5,
) -> PoseMetrics:
    gt, pred, boxes = predictions.ground_truth, predictions.keypoints, predictions.boxes
    results = coco_results(predictions, category_id)
    coco = coco_keypoint_ap(coco_gt, results, spec.oks_sigmas, predictions.image_ids)
    normalizer = torso_normalizers(gt, boxes, spec.torso_indices)
    pck_all, pck_joint = pck(pred, gt, normalizer, pck_alpha)
    errors, labelled = joint_errors(pred, gt)
    per_joint = {}
    for j, name in enumerate(spec.keypoints):
        n = int(labelled[:, j].sum())
        per_joint[name] = JointMetrics(
            pck=float(pck_joint[j]),
            mean_error_px=float(errors[labelled[:, j], j].mean()) if n else float("nan"),
            labelled=n,
        )
    return PoseMetrics(
        ap=coco["ap"],
        ap50=coco["ap50"],
        ap75=coco["ap75"],
        ap_medium=coco["ap_medium"],
        ap_large=coco["ap_large"],
        ar=coco["ar"],
        ar50=coco["ar50"],
        ar75=coco["ar75"],
        pck=pck_all,
        pdj=pdj(pred, gt, boxes, pdj_alpha),
        pcp=pcp(pred, gt, spec.limb_indices, pcp_alpha),
        pck_alpha=pck_alpha,
        pdj_alpha=pdj_alpha,
        pcp_alpha=pcp_alpha,
        num_people=len(gt),
        num_images=len(np.unique(predictions.image_ids)),
        per_joint=per_joint,
    )


def evaluate(
    predict: Predict,
    dataset,
    batch_size: int = 32,
    flip_test: bool = False,
    num_workers: int = 0,
) -> PoseMetrics:
    """Score ``predict`` (float32 NCHW batch -> raw outputs) on an evaluation dataset.

    Outputs become heatmaps through the spec's ``heatmap_activation`` before decoding.
    """
    spec: PoseSpec = dataset.spec

    def heatmaps(batch: dict) -> np.ndarray:
        images = batch["image"]
        out = activate_heatmaps(_to_numpy(predict(images)), spec)
        if flip_test:
            flipped = activate_heatmaps(_to_numpy(predict(torch.flip(images, dims=[-1]))), spec)
            out = (out + flip_heatmaps(flipped, spec.flip_permutation)) / 2
        return out

    predictions = predict_keypoints(dataset, heatmaps, batch_size, num_workers)
    return score_predictions(predictions, dataset.coco, spec, dataset.category_id)


def evaluate_ground_truth(dataset, batch_size: int = 64, num_workers: int = 0) -> PoseMetrics:
    """Score the dataset's own heatmap targets: checks the encode-decode path end to end."""
    predictions = predict_keypoints(
        dataset, lambda batch: batch["heatmaps"], batch_size, num_workers
    )
    return score_predictions(predictions, dataset.coco, dataset.spec, dataset.category_id)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)
