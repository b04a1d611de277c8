"""Heatmap MSE against spatial-softmax cross-entropy for training the student from scratch.

Both losses train the same student (same seed, data, augmentation, AdamW, warm-up + cosine
over --steps) and are scored on the synthetic val split at the end. The student has no skip
connections (skips=False), as when the loss was chosen. Takes ~6 min per loss
for the default 550 steps on 2 cores.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/loss_choice.py --steps 550
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.models import build_architecture
from compress.pose.metrics import evaluate
from compress.pose.spec import coco17
from compress.stages.losses import heatmap_mse, softmax_cross_entropy


def run(loss_name: str, steps: int, lr: float) -> str:
    torch.manual_seed(0)
    activation = "softmax" if loss_name == "softmax_ce" else "none"
    spec = coco17(160, 128, heatmap_activation=activation)
    train_split, val_split = synthetic_splits(10000, 300, 1, 256)
    train_set = CocoPoseDataset(train_split, spec, augment=AugmentConfig())
    val_set = CocoPoseDataset(val_split, spec)
    model = build_architecture("mobilepose", spec, skips=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=32, shuffle=True, num_workers=1, drop_last=True
    )
    loss_fn = softmax_cross_entropy if loss_name == "softmax_ce" else heatmap_mse
    start, step = time.perf_counter(), 0
    while step < steps:
        model.train()
        for batch in loader:
            warm = min(1.0, (step + 1) / 200)
            for group in optimizer.param_groups:
                group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = loss_fn(model(batch["image"]), batch["heatmaps"], batch["weights"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
    model.eval()
    with torch.no_grad():
        m = evaluate(model, val_set)
    seconds = time.perf_counter() - start
    scores = f"AP {m.ap:.4f}  AP50 {m.ap50:.4f}  PCK {m.pck:.4f}"
    return f"{loss_name:10} {steps:5d} steps  {scores}  ({seconds:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=550)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    for loss_name in ("mse", "softmax_ce"):
        print(run(loss_name, args.steps, args.lr), flush=True)


if __name__ == "__main__":
    main()
