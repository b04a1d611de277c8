"""``pocket spec``: pose specs."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli._common import handle_errors

app = typer.Typer(
    help="Show pose specs (keypoints, skeleton, input and output format).", no_args_is_help=True
)


@app.command("show")
@handle_errors
def show(
    height: Annotated[int, typer.Option(min=8, help="Input height.")] = 256,
    width: Annotated[int, typer.Option(min=8, help="Input width.")] = 192,
) -> None:
    """Print the built-in COCO-17 PoseSpec as JSON."""
    from compress.pose.spec import coco17

    typer.echo(coco17(height, width).to_json())
