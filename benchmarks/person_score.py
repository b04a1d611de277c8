"""How the person confidence score moves OKS-AP, with the same keypoints.

COCO AP ranks people by a score. pocket scores a person by the mean peak probability of
its confident joints; this compares it with the mean peak logit, with the probability mass
within 2 cells of each peak, and with the ceiling: an oracle that scores each person by its
true OKS (how much AP any person score could add with these keypoints).

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/person_score.py --model student
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from compress.data.coco import CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.models.zoo import resolve_model
from compress.pose import decode
from compress.pose.metrics import _to_numpy, predict_keypoints, score_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="student")
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundle = resolve_model(args.model)
    bundle.model.eval()
    _, val_split = synthetic_splits(10000, 300, 1, 256)
    dataset = CocoPoseDataset(val_split, bundle.spec)
    logits: list[np.ndarray] = []

    def probabilities(batch: dict) -> np.ndarray:
        with torch.no_grad():
            logits.append(_to_numpy(bundle.model(batch["image"])))
        return decode.activate_heatmaps(logits[-1], bundle.spec)

    predictions = predict_keypoints(dataset, probabilities, 64)
    raw = np.concatenate(logits)
    n, k, h, w = raw.shape
    flat = raw.reshape(n, k, h * w)
    soft = np.exp(flat - flat.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    iy, ix = np.divmod(flat.argmax(-1), w)
    padded = np.pad(soft.reshape(n, k, h, w), ((0, 0), (0, 0), (2, 2), (2, 2)))
    rows, cols = np.arange(n)[:, None], np.arange(k)[None]
    mass = sum(
        padded[rows, cols, iy + 2 + dy, ix + 2 + dx] for dy in range(-2, 3) for dx in range(-2, 3)
    )
    variants = [
        ("peak probability (pocket)", predictions),
        ("peak logit", dataclasses.replace(predictions, scores=flat.max(-1))),
        ("probability mass, 5x5", dataclasses.replace(predictions, scores=mass)),
        (
            "oracle: true OKS",
            dataclasses.replace(predictions, scores=_true_oks(predictions, bundle.spec, k)),
        ),
    ]
    for name, p in variants:
        m = score_predictions(p, dataset.coco, bundle.spec, dataset.category_id)
        print(f"{name:30} AP {m.ap:.4f}  AP50 {m.ap50:.4f}  AP75 {m.ap75:.4f}  PCK {m.pck:.4f}")


def _true_oks(predictions, spec, k: int) -> np.ndarray:
    """Each person's OKS against its ground truth, repeated per joint (every joint counts).

    The object area is approximated as 0.53 of the box, COCO's mean ratio; only the ranking
    matters here. Scores are shifted by 1 so all joints pass the confidence threshold.
    """
    gt = predictions.ground_truth
    boxes = predictions.boxes
    area = boxes[:, 2] * boxes[:, 3] * 0.53
    kappa = 2 * np.asarray(spec.oks_sigmas)
    d2 = ((predictions.keypoints - gt[..., :2]) ** 2).sum(-1)
    per_joint = np.exp(-d2 / (2 * area[:, None] * kappa[None] ** 2 + 1e-9))
    labelled = gt[..., 2] > 0
    oks = (per_joint * labelled).sum(1) / np.maximum(labelled.sum(1), 1)
    return np.repeat(oks[:, None], k, axis=1) + 1.0


if __name__ == "__main__":
    main()
