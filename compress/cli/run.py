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
        Path | None, typer.Option(help="Run folder (default: exported/NAME, the recipe name).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    cache: Annotated[
        bool,
        typer.Option(help="Reuse finished distill/prune stages of an earlier identical run."),
    ] = True,
) -> None:
    """Run a recipe: its compression stages in order, then the run folder with report.json."""
    from compress.errors import CheckFailed
    from compress.pipeline import run_recipe

    try:
        result_out = run_recipe(recipe, out, force, console, use_cache=cache).out
    except CheckFailed:
        _print_summary(console, out, recipe)
        raise
    _print_summary(console, result_out, recipe)


def _print_summary(console, out: Path | None, recipe: Path) -> None:
    """The summary table of the run folder's report, and where the reports are."""
    import json

    from rich.table import Table

    from compress.recipe import Recipe, load_recipe
    from compress.report import summary_rows

    folder = out or Path("exported") / load_recipe(recipe, Recipe).name
    report_file = folder / "report.json"
    if not report_file.exists():
        return
    rows = summary_rows(json.loads(report_file.read_text()))
    if rows:
        table = Table(title="artifacts (latency p50 at 1 thread)")
        for column in ("artifact", "status", "size", "AP", "AP drop", "PCK", "p50"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r["target"],
                r["status"],
                f"{r['size_mb']:.2f} MB" if r.get("size_mb") else "-",
                f"{r['ap']:.4f}" if r.get("ap") is not None else "-",
                f"{r['ap_drop']:.2f}" if r.get("ap_drop") is not None else "-",
                f"{r['pck']:.4f}" if r.get("pck") is not None else "-",
                f"{r['p50_ms']:.2f} ms" if r.get("p50_ms") is not None else "-",
            )
        console.print(table)
    console.print(f"wrote {folder}", soft_wrap=True)
    if (folder / "report.html").exists():
        console.print(f"report: {(folder / 'report.html').resolve()}", soft_wrap=True)


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
