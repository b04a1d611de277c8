"""``pocket data``: datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli._common import console, handle_errors
from compress.errors import RecipeError

app = typer.Typer(help="Create and inspect pose datasets.", no_args_is_help=True)


def _parse_size(text: str) -> tuple[int, int]:
    """'256' or '320x256' (width x height)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise RecipeError(f"--size: expected N or WxH with positive integers, got {text!r}")
    return parts[0], parts[1]


@app.command("synth")
@handle_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create (COCO layout).")],
    train: Annotated[int, typer.Option(min=0, help="Number of training images.")] = 1000,
    val: Annotated[int, typer.Option(min=0, help="Number of validation images.")] = 300,
    seed: Annotated[
        int, typer.Option(min=0, help="Random seed; the same seed gives identical files.")
    ] = 0,
    size: Annotated[str, typer.Option(help="Image size: N or WxH.")] = "256",
    workers: Annotated[int, typer.Option(min=0, help="Processes (0: one per core, up to 4).")] = 0,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Generate synthetic people in COCO keypoint format (images + person_keypoints_*.json)."""
    from compress.data.synth import generate_dataset

    summary = generate_dataset(
        out,
        {"train": train, "val": val},
        seed=seed,
        image_size=_parse_size(size),
        workers=workers,
        force=force,
    )
    for split, n in summary.images.items():
        console.print(f"{split}: {n} images, {summary.people[split]} people")
    console.print(f"wrote {summary.root}")
