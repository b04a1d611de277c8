"""Recipes to results: the glue between recipe, data, models and stages."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from compress import _dist
from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.sources import coco_splits, synthetic_splits
from compress.models.bundle import Bundle, load_bundle
from compress.recipe import TrainRecipe, load_recipe, recipe_hash, resolve
from compress.stages.train import seed_everything, train


def load_datasets(recipe: TrainRecipe, base: Path, spec, seed: int):
    data = recipe.data
    if data.synthetic is not None:
        s = data.synthetic
        # Rank 0 generates (once, cached); the others wait, then everyone finds the same files.
        if _dist.is_main():
            synthetic_splits(s.train, s.val, s.seed, s.image_size)
        _dist.barrier()
        train_split, val_split = synthetic_splits(s.train, s.val, s.seed, s.image_size)
    else:
        c = data.coco
        train_split, val_split = coco_splits(resolve(base, c.root), c.train_split, c.val_split)
    return (
        CocoPoseDataset(train_split, spec, augment=AugmentConfig(), seed=seed),
        CocoPoseDataset(val_split, spec),
    )


def run_training(
    recipe_path: Path, out: Path | None, resume: bool, console: Console
) -> Path | None:
    """Train as the recipe says; returns the best checkpoint's path (on rank 0)."""
    _dist.init_from_env()
    recipe = load_recipe(recipe_path, TrainRecipe)
    base = Path(recipe_path).resolve().parent
    spec = recipe.pose_spec(base)
    seed_everything(recipe.train.seed)  # before building: initial weights are part of the run
    if recipe.model.checkpoint is not None:
        bundle = load_bundle(resolve(base, recipe.model.checkpoint), spec)
    else:
        bundle = Bundle.build(recipe.model.architecture, spec, **recipe.model.arguments)
    bundle.provenance = {"recipe": str(recipe_path), "recipe_sha256": recipe_hash(recipe_path)}
    train_set, val_set = load_datasets(recipe, base, spec, recipe.train.seed)
    run_dir = out or Path("exported") / recipe.name
    _, report = train(
        bundle, recipe.train, train_set, val_set, run_dir, resume=resume, console=console
    )
    if _dist.is_main():
        console.print(
            f"trained {recipe.name}: best AP {report.details['best_ap']:.4f} after "
            f"{report.details['epochs']} epochs ({report.seconds / 60:.1f} min)"
        )
        return run_dir / "best.json"
    return None
