"""Heatmap MSE against spatial-softmax cross-entropy for training the student from scratch.

Both losses train the same student (same seed, data, augmentation, AdamW, warm-up + cosine
over --steps) and are scored on the synthetic val split at the end. The student has no skip
connections (skips=False), as when the loss was chosen. Takes ~6 min per loss
for the default 550 steps on 2 cores.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/loss_choice.py --steps 550
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _short_run import short_run

from compress.pose.spec import coco17
from compress.stages.losses import heatmap_mse, softmax_cross_entropy


def run(loss_name: str, steps: int, lr: float) -> str:
    activation = "softmax" if loss_name == "softmax_ce" else "none"
    spec = coco17(160, 128, heatmap_activation=activation)
    loss_fn = softmax_cross_entropy if loss_name == "softmax_ce" else heatmap_mse
    # NCHW, as when the loss was chosen (before channels_last training).
    m, seconds = short_run(
        spec, "mobilepose", {"skips": False}, steps, lr, loss_fn, channels_last=False
    )
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
