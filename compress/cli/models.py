"""``pocket inspect`` and ``pocket train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from compress.cli._common import console, handle_errors


@handle_errors
def inspect_command(
    model: Annotated[
        str, typer.Argument(help="student, teacher, a checkpoint path, or an architecture name.")
    ],
    layers: Annotated[bool, typer.Option(help="List every layer.")] = True,
) -> None:
    """Print parameters, MACs at the model's input size, input/output shapes and layers."""
    from compress.models.inspect import summarize
    from compress.models.zoo import resolve_model

    bundle = resolve_model(model)
    summary = summarize(bundle.model, bundle.spec, layers=layers)
    console.print(f"[bold]{model}[/]  architecture {bundle.architecture} {bundle.arguments or ''}")
    console.print(f"parameters  {summary.params:,}")
    console.print(
        f"MACs        {summary.macs:,}  ({summary.gmacs:.3f} G at input {summary.input_shape})"
    )
    console.print(
        f"input       {summary.input_shape}  float32 NCHW, {bundle.spec.normalization.color_order}"
    )
    console.print(
        f"output      {summary.output_shape}  heatmaps, stride {bundle.spec.heatmap_stride}"
    )
    if layers:
        table = Table(show_header=True, box=None)
        for col, justify in (
            ("layer", "left"),
            ("type", "left"),
            ("output", "left"),
            ("params", "right"),
            ("MACs", "right"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for layer in summary.layers:
            table.add_row(
                layer.name,
                layer.kind,
                str(layer.output_shape),
                f"{layer.params:,}",
                f"{layer.macs:,}",
            )
        console.print(table)


@handle_errors
def train_command(
    recipe: Annotated[
        Path, typer.Argument(help="A training recipe (recipes/student.yaml, recipes/teacher.yaml).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: exported/NAME, the recipe name).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the same training from the run folder's last state."),
    ] = True,
    force: Annotated[
        bool, typer.Option(help="Start over in a run folder that holds another run's files.")
    ] = False,
) -> None:
    """Train a pose network from a recipe; works unchanged under torchrun."""
    from compress.pipeline import run_training

    result = run_training(recipe, out=out, resume=resume, console=console, force=force)
    if result is not None:
        console.print(f"best checkpoint: {result}")


@handle_errors
def convert_checkpoint_command(
    source: Annotated[
        Path, typer.Argument(help="Checkpoint to read (NAME, NAME.json or NAME.safetensors).")
    ],
    target: Annotated[Path, typer.Argument(help="Checkpoint to write (NAME).")],
    dtype: Annotated[
        str, typer.Option(help="Storage type of floating tensors: float16 or float32.")
    ] = "float16",
    from_pickle: Annotated[
        bool,
        typer.Option(
            help="SOURCE is a PyTorch pickle (.pt/.pth): read its tensors with "
            "torch.load(weights_only=True) into --architecture."
        ),
    ] = False,
    architecture: Annotated[
        str | None, typer.Option(help="With --from-pickle: a registered name or module:builder.")
    ] = None,
    input_size: Annotated[
        str | None,
        typer.Option(help="With --from-pickle: HxW of the COCO-17 PoseSpec [default: 160x128]."),
    ] = None,
) -> None:
    """Re-save a checkpoint (e.g. fp16 storage), or import a PyTorch pickle's weights safely.

    Loading always gives float32 weights; a pickle is read once, with weights_only=True.
    """
    import torch

    from compress.errors import RecipeError
    from compress.models.bundle import (
        Bundle,
        load_bundle,
        load_state,
        read_pickled_weights,
        save_bundle,
    )
    from compress.pose.spec import coco17

    dtypes = {"float16": torch.float16, "float32": torch.float32}
    if dtype not in dtypes:
        raise RecipeError(f"--dtype: {dtype!r} is not one of {sorted(dtypes)}")
    if from_pickle:
        if architecture is None:
            raise RecipeError("--from-pickle needs --architecture (what the weights belong to)")
        try:
            h, w = (int(v) for v in (input_size or "160x128").lower().split("x"))
        except ValueError:
            raise RecipeError(f"--input-size: expected HxW, got {input_size!r}") from None
        bundle = Bundle.build(architecture, coco17(h, w))
        load_state(bundle.model, read_pickled_weights(source), str(source))
    elif architecture is not None or input_size is not None:
        flag = "--architecture" if architecture is not None else "--input-size"
        raise RecipeError(f"{flag} goes with --from-pickle (a pocket checkpoint brings its own)")
    else:
        bundle = load_bundle(source)
    weights, config = save_bundle(bundle, target, dtype=dtypes[dtype])
    console.print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) and {config}")
