"""Which pruning loses least on the shipped student.

One-shot: removes 40 % of the student's MACs in one step with each importance (L1, L2,
Taylor) and scope (global, uniform), over all channels or only inside the blocks (every
block's output kept whole, as ``recipes/pose-mobile.yaml`` does), and scores the result
without fine-tuning. ``--finetuned``: the recipe's prune stage as written against the same
stage pruning all channels by Taylor importance ranked globally (the earlier recipe), both
with the recipe's fine-tuning. Then, as a control, the *unpruned* student fine-tuned with the
recipe's settings, to show what fine-tuning alone does to AP. ``--refit``: the recipe's
pruning with and without least-squares weight reconstruction (``reconstruct``), one-shot and
then fine-tuned (the recipe's rounds, and a single round with all their steps).
``--variants``: that single refitted round with other fine-tuning settings (three times the
learning rate; distillation only, no ground truth).

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/prune_choice.py [--finetuned | --refit]
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
    parser.add_argument(
        "--finetuned", action="store_true", help="only the two fine-tuned prune stages"
    )
    parser.add_argument(
        "--refit", action="store_true", help="the recipe's pruning with and without refitting"
    )
    parser.add_argument(
        "--variants", action="store_true", help="the single refitted round, other fine-tuning"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe, base, student, teacher = prepare_run(args.recipe)
    train_set, val_set = load_datasets(recipe, base, student.spec, recipe.seed)
    quiet = Console(quiet=True)
    context = StageContext(train_set, val_set, REPO / ".cache" / "bench", teacher, 0, quiet)
    print(f"unpruned student: AP {measure(student, val_set).ap:.4f}")
    stage = next(s for s in recipe.stages if s.kind == "prune")
    if args.refit or args.variants:
        refit_table(stage, student, context, val_set, args.variants)
        return
    if args.finetuned:
        everything = stage.model_copy(update={"scope": "global", "protect_patterns": ()})
        for label, config in (("recipe (inside blocks, uniform)", stage),
                              ("all channels, global", everything)):  # fmt: skip
            start = time.perf_counter()
            pruned, details = prune(student, config, context)
            ratio = details["rounds"][-1]["macs_ratio"]
            print(f"{label:32} {config.importance} {config.rounds} rounds x "
                  f"{config.finetune.steps} steps  MACs {ratio:.0%} of the start  "
                  f"AP {measure(pruned, val_set).ap:.4f}  "
                  f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
        return
    for importance in ("l1", "l2", "taylor"):
        for scope in ("global", "uniform"):
            for inside in (False, True) if importance == "taylor" else (False,):
                start = time.perf_counter()
                config = PruneConfig(
                    macs_reduction=args.macs_reduction,
                    importance=importance,
                    scope=scope,
                    protect_patterns=stage.protect_patterns if inside else (),
                    finetune={"steps": 0},
                )
                pruned, details = prune(student, config, context)
                ap = measure(pruned, val_set).ap
                ratio = details["rounds"][-1]["macs_ratio"]
                where = "inside blocks" if inside else "all channels"
                print(f"one-shot {importance:6} {scope:7} {where:13}  MACs {ratio:.0%} of the "
                      f"start  AP {ap:.4f}  ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    for learning_rate in (1e-3, 1e-4):
        tuned = student.copy()
        settings = FinetuneConfig(steps=args.finetune_steps, learning_rate=learning_rate)
        distill_model(tuned.model, student.model, student.spec, train_set, settings, console=quiet)
        print(f"control: unpruned student fine-tuned {args.finetune_steps} steps at lr "
              f"{learning_rate:g}: AP {measure(tuned, val_set).ap:.4f}")  # fmt: skip


def refit_table(
    stage: PruneConfig, student, context: StageContext, val_set, variants: bool
) -> None:
    steps, tune = stage.finetune.steps, stage.finetune

    def single(**change) -> dict:
        finetune = tune.model_copy(update={"steps": steps * stage.rounds, **change})
        return {"rounds": 1, "finetune": finetune}

    long = f"1 round x {steps * stage.rounds} steps"
    if variants:
        runs = [(f"{long}, lr {3 * tune.learning_rate:g}",
                 single(learning_rate=3 * tune.learning_rate), True),
                (f"{long}, no ground truth", single(ground_truth_weight=0.0), True)]  # fmt: skip
    else:
        one_shot = {"finetune": tune.model_copy(update={"steps": 0}), "rounds": 1}
        runs = [("one-shot", one_shot, False), ("one-shot", one_shot, True),
                (f"{stage.rounds} rounds x {steps} steps", {}, False),
                (f"{stage.rounds} rounds x {steps} steps", {}, True),
                (long, single(), True)]  # fmt: skip
    for label, update, reconstruct in runs:
        config = stage.model_copy(update={**update, "reconstruct": reconstruct})
        start = time.perf_counter()
        pruned, details = prune(student, config, context)
        ratio = details["rounds"][-1]["macs_ratio"]
        print(f"{label:36} refit {'yes' if reconstruct else 'no ':3}  MACs {ratio:.0%} of the "
              f"start  AP {measure(pruned, val_set).ap:.4f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
