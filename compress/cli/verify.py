"""``pocket verify``: re-check a run folder (hashes, metrics, gates) or parity on own images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli._common import console, handle_errors


@handle_errors
def verify_command(
    run: Annotated[Path, typer.Argument(help="A run folder written by pocket run.")],
    images: Annotated[
        Path | None,
        typer.Option(help="A folder of unlabeled images: parity of every artifact on them."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="With --images: at most this many [default: 256].")
    ] = None,
) -> None:
    """Re-check a run folder: hashes, then metrics and gates, or parity on your own images.

    Files must be unchanged (sha256); then every artifact is scored again in its runtime
    against the recipe's gates, or, with --images, compared with the float model.
    """
    import json

    from rich.table import Table

    from compress.errors import OutputError, RecipeError
    from compress.models.bundle import load_bundle
    from compress.verify.recheck import (
        check_hashes,
        fail_if,
        image_parity,
        load_images,
        read_manifest,
    )

    if limit is not None and images is None:
        raise RecipeError("--limit caps the --images parity check; give --images or drop --limit")
    manifest = read_manifest(run)
    fail_if(check_hashes(run, manifest), f"{run}")
    console.print(
        f"{run}: {len(manifest.get('artifacts', []))} file(s), hashes match", soft_wrap=True
    )
    if images is not None:
        batch = load_images(images, load_bundle(run / "float").spec, limit or 256)
        table = Table(title=f"parity on {len(batch)} image(s) from {images}")
        for column in ("artifact", "keypoint OKS", "mean shift px", "rel. L2", "worst joints"):
            table.add_column(column)
        for row in image_parity(run, manifest, batch):
            worst = ", ".join(f"{j} {d:.1f}px" for j, d in row["worst_joints"])
            table.add_row(row["target"], f"{row['keypoint_oks']:.4f}",
                          f"{row['mean_keypoint_shift_px']:.2f}", f"{row['relative_l2']:.4f}",
                          worst)  # fmt: skip
        console.print(table)
        return
    report_path = run / "report.json"
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{run}: no report.json") from None
    from compress.pipeline import load_datasets
    from compress.recipe import Recipe, load_recipe
    from compress.verify.artifacts import verify_run
    from compress.verify.gates import apply_gates

    recipe_path = Path(report["recipe"])
    recipe = load_recipe(recipe_path, Recipe)
    if recipe.checks is None:
        console.print(
            f"{recipe_path} has no checks section: nothing more to re-check", soft_wrap=True
        )
        return
    float_bundle = load_bundle(run / "float")
    _, val_set = load_datasets(recipe, recipe_path.resolve().parent, float_bundle.spec, 0, console)
    artifacts = [(f"{a['format']}:{a['variant']}", run / a["file"]) for a in manifest["artifacts"]]
    verification = verify_run(
        artifacts, float_bundle.model, val_set, console, recipe.checks.threads,
        recipe.checks.latency_runs,
    )  # fmt: skip
    sizes = {f"{a['format']}:{a['variant']}": a["bytes"] for a in manifest["artifacts"]}
    before = {r["target"]: r for r in (report.get("verification") or {}).get("artifacts", [])}
    for row in verification["artifacts"]:
        old = before.get(row["target"], {}).get("metrics", {}).get("ap")
        if old is not None and row.get("metrics"):
            console.print(f"{row['target']}: AP {row['metrics']['ap']:.4f} now, "
                          f"{old:.4f} in the report", soft_wrap=True)  # fmt: skip
    fail_if(apply_gates(verification, sizes, recipe.checks), f"{run}: checks failed")
    console.print(f"{run}: every check passes", soft_wrap=True)
