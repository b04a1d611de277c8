"""How much plain PTQ's AP drop depends on which images calibrate it.

Quantizes one float network (default: the pruned `float` checkpoint of a `pocket run` folder)
with plain PTQ (no layer kept in float) for each observer, calibration size and calibration
seed (the seed picks the images), and scores each on the recipe's whole val split. The spread
over seeds is the noise floor under any single PTQ number.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/ptq_spread.py [RUN/float]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from compress.models.bundle import load_bundle
from compress.pipeline import load_datasets
from compress.recipe import Recipe, load_recipe
from compress.stages.base import StageContext, measure
from compress.stages.configs import QuantizeConfig
from compress.stages.quantize import quantize

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "network", type=Path, nargs="?", default=REPO / "exported/pose-mobile/float"
    )
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "pose-mobile.yaml")
    parser.add_argument("--observers", nargs="+", default=["histogram", "moving_average", "minmax"])
    parser.add_argument("--samples", nargs="+", type=int, default=[256])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, Recipe)
    network = load_bundle(args.network)
    train_set, val_set = load_datasets(
        recipe, args.recipe.resolve().parent, network.spec, recipe.seed
    )
    float_ap = measure(network, val_set).ap
    print(f"{args.network}: float AP {float_ap:.4f} on {len(val_set)} people")
    scratch = Path(tempfile.mkdtemp(prefix="ptq-spread-"))  # the stage writes nothing there
    for observer in args.observers:
        for samples in args.samples:
            drops = []
            for seed in args.seeds:
                start = time.perf_counter()
                context = StageContext(
                    train_set, val_set, scratch, seed=seed, console=Console(quiet=True)
                )
                config = QuantizeConfig(observer=observer, calibration_samples=samples)
                quantized, _ = quantize(network, config, context)
                drops.append(100 * (float_ap - measure(quantized, val_set).ap))
                print(
                    f"  {observer:14s} {samples:5d} images  seed {seed}: "
                    f"AP drop {drops[-1]:+.2f}  ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
            print(
                f"{observer:14s} {samples:5d} images: AP drop mean {statistics.mean(drops):.2f}, "
                f"min {min(drops):.2f}, max {max(drops):.2f} over seeds {args.seeds}",
                flush=True,
            )


if __name__ == "__main__":
    main()
