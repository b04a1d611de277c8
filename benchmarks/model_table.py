"""The README model table: params, MACs, input size, checkpoint size and accuracy of the
shipped networks on the synthetic val split their recipes train against; when the fp32
training checkpoints they were made from are still in RUNS/NAME/best, also what fp16 storage
cost (a checkpoint from another training run is named and skipped).

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/model_table.py [--runs exported]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from compress.data.coco import CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.models.bundle import checkpoint_paths, load_bundle
from compress.models.inspect import summarize
from compress.models.zoo import SHIPPED, resolve_model, shipped_path
from compress.pose.metrics import evaluate
from compress.recipe import TrainRecipe, load_recipe

REPO = Path(__file__).resolve().parent.parent


def score(model: torch.nn.Module, dataset):
    model.eval()
    with torch.no_grad():
        return evaluate(model, dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs",
        type=Path,
        default=REPO / "exported",
        help="folder of the training runs (NAME/best) the checkpoints came from",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    fp16_checks = []
    print(f"{'model':8} {'arch':11} {'params':>10} {'GMACs':>6} {'input':>8} {'ckpt MB':>8} "
          f"{'AP':>6} {'AP50':>6} {'AR':>6} {'PCK':>6} {'people':>6}")  # fmt: skip
    for name in SHIPPED:
        weights, _ = checkpoint_paths(shipped_path(name))
        if not weights.exists():
            print(f"{name:8} (not shipped yet)")
            continue
        bundle = resolve_model(name)
        recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", TrainRecipe)
        s = recipe.data.synthetic
        _, val_split = synthetic_splits(s.train, s.val, s.seed, s.image_size)
        dataset = CocoPoseDataset(val_split, bundle.spec)
        m = score(bundle.model, dataset)
        trained = args.runs / name / "best"
        if checkpoint_paths(trained)[0].exists():
            run = load_bundle(trained)
            if run.provenance.get("trained") != bundle.provenance.get("trained"):
                fp16_checks.append(f"{name}: {trained} is from another training run, not compared")
            else:  # the fp32 checkpoint the fp16 one came from
                fp32 = score(run.model, dataset)
                fp16_checks.append(f"{name}: fp32 AP {fp32.ap:.4f}, fp16 AP {m.ap:.4f}, "
                                   f"difference {m.ap - fp32.ap:+.4f}")  # fmt: skip
        summary = summarize(bundle.model, bundle.spec, layers=False)
        h, w = bundle.spec.input_size
        print(
            f"{name:8} {bundle.architecture:11} {summary.params:10,} {summary.gmacs:6.3f} "
            f"{f'{h}x{w}':>8} {weights.stat().st_size / 1e6:8.2f} {m.ap:6.3f} {m.ap50:6.3f} "
            f"{m.ar:6.3f} {m.pck:6.3f} {m.num_people:6d}"
        )
    for line in fp16_checks:
        print(line)


if __name__ == "__main__":
    main()
