"""Retrain the shipped networks from their recipes and check they land within 2 AP points.

Slow (about 2 hours on 2 cores): run it with `make retrain-check`, not in CI. The networks
train side by side with one thread each, exactly as `make train-networks` made the shipped
ones; each run goes to .cache/retrain/NAME (resumable). The shipped checkpoint and the
retrained one are scored on the same synthetic val split.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from compress.data.coco import CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.models.bundle import load_bundle
from compress.models.zoo import SHIPPED, resolve_model
from compress.pose.metrics import evaluate
from compress.recipe import TrainRecipe, load_recipe

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 0.02


def score(bundle, dataset) -> float:
    bundle.model.eval()
    with torch.no_grad():
        return evaluate(bundle.model, dataset).ap


def out_dir(name: str) -> Path:
    return REPO / ".cache" / "retrain" / name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=list(SHIPPED))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pocket = [sys.executable, "-m", "compress", "train"]
    runs = {
        name: subprocess.Popen(
            [*pocket, str(REPO / "recipes" / f"{name}.yaml"), "--out", str(out_dir(name))],
            env=env,
        )
        for name in args.names
    }
    for name, proc in runs.items():
        if proc.wait():
            print(f"{name}: training failed with exit code {proc.returncode}")
            return 2
    failed = False
    for name in args.names:
        recipe_path = REPO / "recipes" / f"{name}.yaml"
        out = out_dir(name)
        recipe = load_recipe(recipe_path, TrainRecipe)
        s = recipe.data.synthetic
        _, val_split = synthetic_splits(s.train, s.val, s.seed, s.image_size)
        shipped = resolve_model(name)
        retrained = load_bundle(out / "best")
        dataset = CocoPoseDataset(val_split, shipped.spec)
        ap_shipped, ap_retrained = score(shipped, dataset), score(retrained, dataset)
        ok = abs(ap_shipped - ap_retrained) <= TOLERANCE
        failed |= not ok
        print(
            f"{name}: shipped AP {ap_shipped:.4f}  retrained AP {ap_retrained:.4f}  "
            f"difference {ap_retrained - ap_shipped:+.4f}  {'OK' if ok else 'FAIL'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
