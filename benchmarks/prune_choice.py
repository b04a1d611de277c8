"""Which pruning criterion loses least on the shipped student, before any fine-tuning.

Removes 40 % of the student's MACs in one step with each importance (L1, L2, Taylor) and
scope (global, uniform) and scores the result without fine-tuning; then, as a control,
fine-tunes the *unpruned* student with the recipe's fine-tuning settings, to show what
fine-tuning alone does to AP.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/prune_choice.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console

from compress.pipeline import load_datasets, prepare_run
from compress.stages.base import StageContext, measure
from compress.stages.configs import FinetuneConfig, PruneConfig
from compress.stages.distill import distill_model
from compress.stages.prune import prune

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "pose-mobile.yaml")
    parser.add_argument("--macs-reduction", type=float, default=0.4)
    parser.add_argument("--finetune-steps", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(2)
    recipe, base, student, teacher = prepare_run(args.recipe)
    train_set, val_set = load_datasets(recipe, base, student.spec, recipe.seed)
    quiet = Console(quiet=True)
    context = StageContext(train_set, val_set, REPO / ".cache" / "bench", teacher, 0, quiet)
    print(f"unpruned student: AP {measure(student, val_set).ap:.4f}")
    for importance in ("l1", "l2", "taylor"):
        for scope in ("global", "uniform"):
            start = time.perf_counter()
            config = PruneConfig(
                macs_reduction=args.macs_reduction,
                importance=importance,
                scope=scope,
                finetune={"steps": 0},
            )
            pruned, details = prune(student, config, context)
            ap = measure(pruned, val_set).ap
            ratio = details["rounds"][-1]["macs_ratio"]
            print(f"one-shot {importance:6} {scope:7} MACs {ratio:.0%} of the start  "
                  f"AP {ap:.4f}  ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    for learning_rate in (1e-3, 1e-4):
        tuned = student.copy()
        settings = FinetuneConfig(steps=args.finetune_steps, learning_rate=learning_rate)
        distill_model(tuned.model, student.model, student.spec, train_set, settings, console=quiet)
        print(f"control: unpruned student fine-tuned {args.finetune_steps} steps at lr "
              f"{learning_rate:g}: AP {measure(tuned, val_set).ap:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
