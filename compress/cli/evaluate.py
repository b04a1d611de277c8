"""``pocket eval``: score a model (or the ground truth itself) on a COCO keypoint split."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from compress._io import write_json_atomic
from compress.cli._common import console, handle_errors
from compress.errors import RecipeError


class BadSample(enum.StrEnum):
    error = "error"
    skip = "skip"


@handle_errors
def eval_command(
    data: Annotated[Path, typer.Option(help="COCO-format dataset folder.")],
    split: Annotated[
        str, typer.Option(help="Split name: annotations/person_keypoints_SPLIT.json.")
    ] = "val",
    model: Annotated[
        str | None,
        typer.Option(help="student, teacher, a checkpoint path, or an architecture name."),
    ] = None,
    ground_truth: Annotated[
        bool,
        typer.Option(
            "--ground-truth",
            help="Score the annotations against themselves through heatmap encode-decode.",
        ),
    ] = False,
    flip_test: Annotated[
        bool, typer.Option(help="Average with the horizontally flipped input.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics as JSON here.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size.")] = 64,
    on_bad_sample: Annotated[
        BadSample,
        typer.Option(help="A person that cannot be used: stop with the list, or leave it out."),
    ] = BadSample.error,
    height: Annotated[
        int | None, typer.Option(min=8, help="Input height for --ground-truth [default: 256].")
    ] = None,
    width: Annotated[
        int | None, typer.Option(min=8, help="Input width for --ground-truth [default: 192].")
    ] = None,
) -> None:
    """Print OKS-AP/AR, PCK, PDJ, PCP and a per-joint table; optionally write JSON."""
    import torch

    from compress.data.coco import CocoPoseDataset
    from compress.models.zoo import resolve_model
    from compress.pose.metrics import evaluate, evaluate_ground_truth
    from compress.pose.spec import coco17

    if (model is None) == (not ground_truth):
        raise RecipeError("give exactly one of --model or --ground-truth")
    if model is not None and (height or width):
        raise RecipeError(
            f"{'--height' if height else '--width'} sets the input of --ground-truth; "
            f"--model {model} brings its own input size"
        )
    if ground_truth and flip_test:
        raise RecipeError("--flip-test averages a network's outputs; --ground-truth has none")
    if model is None:
        dataset = CocoPoseDataset.from_folder(
            data, split, coco17(height or 256, width or 192), on_bad_sample=on_bad_sample.value
        )
        metrics = evaluate_ground_truth(dataset, batch_size=batch_size)
        source = "ground truth through encode-decode"
    else:
        bundle = resolve_model(model)
        bundle.model.eval()
        dataset = CocoPoseDataset.from_folder(
            data, split, bundle.spec, on_bad_sample=on_bad_sample.value
        )
        with torch.no_grad():
            metrics = evaluate(bundle.model, dataset, batch_size=batch_size, flip_test=flip_test)
        source = f"{model}{' + flip test' if flip_test else ''}"
    left_out = dataset.bad_sample_summary()
    if left_out:
        console.print(f"[yellow]warning:[/] {escape(left_out)}", soft_wrap=True)
    print_metrics(metrics, title=f"{source} — {data} [{split}], GT boxes")
    if json_out is not None:
        payload = {
            "source": source,
            "data": str(data),
            "split": split,
            "metrics": metrics.to_dict(),
        }
        write_json_atomic(json_out, payload)
        console.print(f"wrote {json_out}")


def _fmt(value: float, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def print_metrics(metrics, title: str) -> None:
    summary = Table(title=title, show_header=True)
    for name in (
        "AP",
        "AP50",
        "AP75",
        "AR",
        f"PCK@{metrics.pck_alpha}",
        f"PDJ@{metrics.pdj_alpha}",
        f"PCP@{metrics.pcp_alpha}",
        "people",
    ):
        summary.add_column(name, justify="right")
    summary.add_row(
        *(
            _fmt(v)
            for v in (
                metrics.ap,
                metrics.ap50,
                metrics.ap75,
                metrics.ar,
                metrics.pck,
                metrics.pdj,
                metrics.pcp,
            )
        ),
        str(metrics.num_people),
    )
    console.print(summary)
    joints = Table(title="per joint", show_header=True)
    joints.add_column("joint")
    joints.add_column(f"PCK@{metrics.pck_alpha}", justify="right")
    joints.add_column("mean error px", justify="right")
    joints.add_column("labelled", justify="right")
    for name, jm in metrics.per_joint.items():
        joints.add_row(name, _fmt(jm.pck), _fmt(jm.mean_error_px, 2), str(jm.labelled))
    console.print(joints)
