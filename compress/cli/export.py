"""``pocket export``: a checkpoint to app-ready files, without a full recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli._common import console, handle_errors


@handle_errors
def export_command(
    model: Annotated[str, typer.Argument(help="student, teacher, or a checkpoint path.")],
    formats: Annotated[
        list[str],
        typer.Option(
            "--format",
            help="format:variant, repeatable (tflite:fp32|fp16|dynamic_int8|int8, "
            "onnx:fp32|int8, coreml:fp16|int8_weights|w8a8|palette8|palette6|palette4).",
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    data: Annotated[
        Path | None,
        typer.Option(help="COCO folder whose train split calibrates int8 targets."),
    ] = None,
    calibration: Annotated[
        int | None, typer.Option(min=1, help="Calibration images for int8 [default: 256].")
    ] = None,
    nhwc: Annotated[bool, typer.Option(help="TFLite: NHWC input and output.")] = False,
    int8_io: Annotated[bool, typer.Option(help="TFLite int8: int8 input and output.")] = False,
    opset: Annotated[int | None, typer.Option(help="ONNX opset [default: 18].")] = None,
    coreml_target: Annotated[
        str | None, typer.Option(help="Core ML deployment target [default: iOS17].")
    ] = None,
    image_input: Annotated[
        bool, typer.Option(help="Core ML: image input, normalisation inside the model.")
    ] = False,
) -> None:
    """Export a network to TFLite, ONNX and Core ML files with the pose metadata inside."""
    from rich.console import Console

    from compress._io import atomic_directory, refuse_existing
    from compress.data.coco import AugmentConfig, CocoPoseDataset
    from compress.errors import CheckFailed, RecipeError
    from compress.export import (
        ExportContext,
        ExportOptions,
        exporter,
        options_without_target,
        parse_targets,
    )
    from compress.export.metadata import pose_metadata
    from compress.export.run import export_targets, write_manifest
    from compress.models.zoo import resolve_model
    from compress.stages.base import StageContext
    from compress.stages.configs import QuantizeConfig
    from compress.stages.quantize import calibration_batches, quantize

    targets = parse_targets(formats)  # every name checked before any work
    flags = {"nhwc": "--nhwc", "int8_io": "--int8-io", "onnx_opset": "--opset",
             "coreml_target": "--coreml-target", "coreml_image_input": "--image-input"}  # fmt: skip
    values = (nhwc, int8_io, opset, coreml_target, image_input)
    given = [name for name, value in zip(flags, values, strict=True) if value not in (None, False)]
    if unused := options_without_target(given, targets):
        name, scope = next(iter(unused.items()))
        raise RecipeError(
            f"{flags[name]} acts on {scope}, and no --format is one: "
            f"drop {flags[name]} or add such a target"
        )
    bundle = resolve_model(model)
    name = Path(model).stem if model.endswith((".json", ".safetensors")) else Path(model).name
    out = out or Path("exported") / f"{name}-export"
    refuse_existing(out, force)
    quantized, batches = None, []
    int8 = [t for t in targets if t.variant in type(exporter(t.format)).needs_quantized]
    calibrated = int8 or any(str(t) == "onnx:int8" for t in targets)
    if not calibrated and (data is not None or calibration is not None):
        raise RecipeError(
            f"{'--data' if data is not None else '--calibration'} calibrates int8 targets "
            f"and no --format needs calibration ({', '.join(map(str, targets))})"
        )
    calibration = calibration or 256
    if calibrated:
        if data is None:
            raise RecipeError(
                f"{', '.join(str(t) for t in int8) or 'onnx:int8'} need calibration images: "
                "give --data COCO_FOLDER"
            )
        train = CocoPoseDataset.from_folder(data, "train", bundle.spec, augment=AugmentConfig())
        val = CocoPoseDataset.from_folder(data, "val", bundle.spec)
        context = StageContext(train, val, out, console=Console(quiet=True))
        batches = calibration_batches(train, calibration, seed=0)
        if int8:
            quantized, _ = quantize(
                bundle, QuantizeConfig(calibration_samples=calibration), context
            )
    options = ExportOptions(
        nhwc=nhwc,
        int8_io=int8_io,
        onnx_opset=opset or 18,
        coreml_target=coreml_target or "iOS17",
        coreml_image_input=image_input,
    )
    context = ExportContext(bundle, pose_metadata(bundle, name), quantized, batches, options)
    with atomic_directory(out, force=force) as work:
        result = export_targets(context, targets, work, console)
        write_manifest(result, work, {"model": model, "targets": [str(t) for t in targets]})
    console.print(f"wrote {out}", soft_wrap=True)
    if result.failures:
        raise CheckFailed(
            f"export failed for {', '.join(result.failures)} (see {out}/manifest.json)"
        )
