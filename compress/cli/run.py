"""``pocket run`` and ``pocket recipe check|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from compress.cli._common import console, handle_errors

RecipeArg = Annotated[Path, typer.Argument(help="A recipe YAML file (see recipes/).")]
app = typer.Typer(help="Validate and show recipes.", no_args_is_help=True)


@handle_errors
def run_command(
    recipe: RecipeArg,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: exported/<recipe name>).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
) -> None:
    """Run a recipe: its compression stages in order, then the run folder with report.json."""
    from compress.pipeline import run_recipe

    result = run_recipe(recipe, out, force, console)
    console.print(f"wrote {result.out}", soft_wrap=True)


@app.command("check")
@handle_errors
def check_command(recipe: RecipeArg) -> None:
    """Validate a recipe: keys, types, ranges, stage order, networks, files and layer names."""
    from compress.pipeline import prepare_run

    loaded, _, _, _ = prepare_run(recipe)
    kinds = ", ".join(s.kind for s in loaded.stages) or "none"
    console.print(f"{recipe}: ok ({len(loaded.stages)} stage(s): {kinds})", soft_wrap=True)


@app.command("show")
@handle_errors
def show_command(recipe: RecipeArg) -> None:
    """Print the recipe as pocket reads it, every default filled in."""
    from compress.recipe import Recipe, load_recipe

    loaded = load_recipe(recipe, Recipe)
    data = loaded.model_dump(mode="json")
    console.print(yaml.safe_dump(data, sort_keys=False), end="", highlight=False, markup=False)
