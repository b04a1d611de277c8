"""What the compression stages cost on the shipped networks, against the targets.

Runs the stages of recipes/pose-mobile.yaml (distill, prune, quantize) once and times them,
then, on the same pruned float network: plain PTQ (no layer kept in float), the QAT variant of
recipes/pose-qat.yaml, and the per-layer sensitivity with an `auto` budget half of what plain
PTQ loses. AP drops are in AP points (0-100) on the
synthetic val split; every number comes from one run of this script.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/compression.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from compress.pipeline import load_datasets, prepare_run
from compress.recipe import Recipe, load_recipe
from compress.stages.base import StageContext, measure, run_stage
from compress.stages.distill import distill
from compress.stages.prune import prune
from compress.stages.quantize import quantize

REPO = Path(__file__).resolve().parent.parent


def points(before: dict, after: dict) -> float:
    return 100 * (before["ap"] - after["ap"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "pose-mobile.yaml")
    parser.add_argument("--qat-recipe", type=Path, default=REPO / "recipes" / "pose-qat.yaml")
    args = parser.parse_args()
    console = Console()
    recipe, base, student, teacher = prepare_run(args.recipe)
    qat_stage = load_recipe(args.qat_recipe, Recipe).stages[-1]
    train_set, val_set = load_datasets(recipe, base, student.spec, recipe.seed)
    context = StageContext(
        train_set, val_set, REPO / ".cache" / "bench", teacher, recipe.seed, console
    )
    functions = {"distill": distill, "prune": prune, "quantize": quantize}

    start = time.perf_counter()
    bundle, metrics, reports = student, measure(student, val_set), {}
    for stage in recipe.stages:
        bundle, reports[stage.kind], metrics = run_stage(
            stage.kind, functions[stage.kind], bundle, stage, context, metrics
        )
        if stage.kind == "prune":
            pruned, pruned_metrics = bundle, metrics
    recipe_minutes = (time.perf_counter() - start) / 60

    # Plain PTQ (the recipe's calibration, no layer kept in float), QAT, and `auto` with a
    # budget half of what plain PTQ loses, all from the same pruned float network.
    plain_stage = recipe.stages[-1].model_copy(
        update={"sensitivity": False, "auto_max_ap_drop": None}
    )
    _, ptq_report, _ = run_stage("quantize", quantize, pruned, plain_stage, context, pruned_metrics)
    _, qat_report, _ = run_stage("quantize", quantize, pruned, qat_stage, context, pruned_metrics)
    ptq_drop = ptq_report.ap_drop
    budget = round(max(0.05, min(0.5, ptq_drop / 2)), 2)
    auto_stage = plain_stage.model_copy(update={"sensitivity": True, "auto_max_ap_drop": budget})
    _, auto_report, _ = run_stage("quantize", quantize, pruned, auto_stage, context, pruned_metrics)

    p = reports["prune"]
    macs_cut = 1 - p.macs_after / p.macs_before
    qat_drop = qat_report.ap_drop
    print("\nstage            AP before  AP after  drop (points)  MACs before -> after (G)  s")
    for name, r in [
        *(("quantize (recipe)" if k == "quantize" else k, v) for k, v in reports.items()),
        ("quantize (PTQ)", ptq_report),
        ("quantize (QAT)", qat_report),
        ("quantize (auto)", auto_report),
    ]:
        print(
            f"{name:16} {r.metrics_before['ap']:9.4f} {r.metrics_after['ap']:9.4f} "
            f"{r.ap_drop:+13.2f}  {r.macs_before / 1e9:.3f} -> {r.macs_after / 1e9:.3f}"
            f"{'':14}{r.seconds:5.0f}"
        )
    layers = auto_report.details["sensitivity"]["layers"]
    print(
        f"\nsensitivity ({len(layers)} layers, on "
        f"{auto_report.details['sensitivity']['people']} people), most sensitive first:"
    )
    for row in layers[:8]:
        print(
            f"  {row['layer']:28} AP drop {row['ap_drop']:+6.2f}  output error "
            f"{row['output_error']:.4f}"
        )
    floats = auto_report.details["float_layers"]
    checks = [
        (f"pruning removes >= 40 % of MACs ({macs_cut:.1%})", macs_cut >= 0.40),
        (f"pruning AP drop <= 1.0 after fine-tuning ({p.ap_drop:.2f})", p.ap_drop <= 1.0),
        (f"PTQ AP drop <= 0.5 ({ptq_drop:.2f})", ptq_drop <= 0.5),
        (
            f"QAT recovers >= half of the PTQ drop above 0.3 (PTQ {ptq_drop:.2f}, QAT "
            f"{qat_drop:.2f})",
            ptq_drop <= 0.3 or ptq_drop - qat_drop >= (ptq_drop - 0.3) / 2,
        ),
        (
            f"auto meets {budget} with {len(floats)} float layer(s) "
            f"({auto_report.ap_drop:.2f}; plain PTQ {ptq_drop:.2f})",
            auto_report.ap_drop <= budget,
        ),
        (
            f"the default recipe's stages take <= 15 min ({recipe_minutes:.1f})",
            recipe_minutes <= 15,
        ),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
