"""How the person confidence score moves OKS-AP, with the same keypoints.

COCO AP ranks people by a score. pocket scores a person by the mean peak probability of
its confident joints; this compares it with the mean peak logit and with the probability
mass within 2 cells of each peak.

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
    ]
    for name, p in variants:
        m = score_predictions(p, dataset.coco, bundle.spec, dataset.category_id)
        print(f"{name:30} AP {m.ap:.4f}  AP50 {m.ap50:.4f}  AP75 {m.ap75:.4f}  PCK {m.pck:.4f}")


if __name__ == "__main__":
    main()
