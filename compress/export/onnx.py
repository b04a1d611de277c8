"""ONNX through torch.onnx (dynamo exporter), int8 through ONNX Runtime's static quantization.

``fp32``: the float network, batch dimension dynamic, checked with onnx.checker.
``int8``: QDQ with per-channel int8 weights and uint8 activations (u8s8, the fast combination
on x86), calibrated on the same images as the quantize stage. ONNX Runtime quantizes the
float graph itself: a PT2E-quantized PyTorch graph exported to ONNX keeps float weights. The
layers the quantize stage kept in float are left out of that quantization, found in the ONNX
graph by their weight's name or by the module path the exporter records on each node.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from compress.errors import RecipeError, UnsupportedOperationError
from compress.export import register_exporter
from compress.export.base import Artifact, ExportContext, Exporter, file_digest
from compress.export.metadata import METADATA_KEY, encode, for_artifact
from compress.export.support import conversion_failed

INPUT, OUTPUT = "image", "heatmaps"


@register_exporter
class OnnxExporter(Exporter):
    name = "onnx"
    variants: ClassVar[dict[str, str]] = {
        "fp32": "float32 weights and activations",
        "int8": "QDQ int8: per-channel int8 weights, uint8 activations (ONNX Runtime calibration)",
    }

    def export(self, context: ExportContext, variant: str, folder: Path) -> Artifact:
        import onnx

        path = folder / f"{context.metadata['model']['name']}-{variant}.onnx"
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            _export_float(context, variant, fp32)
            if variant == "int8":
                _quantize(context, fp32, path, Path(tmp))
            else:
                path.write_bytes(fp32.read_bytes())
        model = onnx.load(str(path))
        _strip_trace(model)
        _share_initializers(model)
        meta = for_artifact(
            context.metadata,
            variant=f"onnx:{variant}",
            input={"name": INPUT, "dtype": "float32"},
            output={"name": OUTPUT},
        )
        onnx.helper.set_model_props(model, {METADATA_KEY: encode(meta)})
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        size, sha = file_digest(path)
        shape_in = meta["input"]["shape"]
        return Artifact(
            path,
            self.name,
            variant,
            size,
            sha,
            inputs=[
                {
                    "name": INPUT,
                    "shape": ["batch", *shape_in[1:]],
                    "dtype": "float32",
                    "layout": "NCHW",
                }
            ],
            outputs=[
                {
                    "name": OUTPUT,
                    "shape": ["batch", *meta["output"]["shape"][1:]],
                    "dtype": "float32",
                    "layout": "NCHW",
                }
            ],
        )


def _strip_trace(model) -> None:
    """Drop what the exporter records for debugging. Per node, stack traces with this
    machine's file paths and FX node text: they leak local paths into a shipped file, make
    the bytes depend on where pocket is installed, and are 2 % of the fp32 file. On the
    graph and its inputs, the PyTorch program's signature (``pkg.torch.export.*``): a
    listing of every parameter before export, batch norms that no longer exist included,
    33 kB on the student, 1.5 % of its int8 file. pocket's own metadata is on the model."""
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
    for item in [graph, *graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        kept = [p for p in item.metadata_props if not p.key.startswith("pkg.torch.")]
        del item.metadata_props[:]
        item.metadata_props.extend(kept)


def _share_initializers(model) -> None:
    """Keep one copy of identical constants. ONNX Runtime's quantizer writes a zero point
    (and often a scale) per tensor, mostly the same zeros; nodes may share an initializer
    by name, so each distinct one is stored once and the numbers stay the same."""
    from onnx import numpy_helper

    first: dict[tuple, str] = {}
    renamed: dict[str, str] = {}
    kept = []
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        key = (tensor.data_type, tuple(tensor.dims), array.tobytes())
        if key in first:
            renamed[tensor.name] = first[key]
        else:
            first[key] = tensor.name
            kept.append(tensor)
    if not renamed:
        return
    public = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    if public & renamed.keys():
        return  # a constant that is also a graph input or output keeps its own name
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    keep_info = [v for v in model.graph.value_info if v.name not in renamed]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep_info)


def _export_float(context: ExportContext, variant: str, path: Path) -> None:
    """The float graph at ``path``; exported once per context, int8 quantizes the same one."""
    data = context.memo(
        ("onnx:fp32", context.options.onnx_opset), lambda: _float_bytes(context, variant)
    )
    path.write_bytes(data)


def _float_bytes(context: ExportContext, variant: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.onnx"
        _torch_export(context, variant, path)
        return path.read_bytes()


def _torch_export(context: ExportContext, variant: str, path: Path) -> None:
    model = copy.deepcopy(context.bundle.model).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    argument = next(iter(_forward_arguments(model)), "x")
    try:
        torch.onnx.export(
            model,
            (context.example,),
            str(path),
            dynamo=True,
            opset_version=context.options.onnx_opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={argument: {0: batch}},
            external_data=False,
            optimize=True,
        )
    except Exception as exc:  # the exporter raises many types; name the failure, keep going
        raise conversion_failed("onnx", variant, context.operations(), exc) from exc


def _forward_arguments(model: torch.nn.Module) -> list[str]:
    import inspect

    return [p for p in inspect.signature(model.forward).parameters if p != "self"]


def _quantize(context: ExportContext, fp32: Path, out: Path, tmp: Path) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if not context.calibration:
        raise RecipeError("onnx:int8 needs calibration images (a quantize stage, or --calibration)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                {INPUT: image[None].numpy().astype(np.float32)}
                for batch in context.calibration
                for image in batch
            )

        def get_next(self):
            return next(self._batches, None)

    prepared = tmp / "prepared.onnx"
    # ONNX shape inference suffices here; the symbolic pass gives up on the dynamic batch.
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantization = context.quantized.quantization if context.quantized is not None else None
    in_float = quantization.settings.get("float_layers", []) if quantization is not None else []
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=float_nodes(onnx.load(str(prepared)), in_float),
    )


# PT2E operation names (``aten.<op>``) of the layers without weights, as ONNX node types.
_ONNX_OP = {
    "add": "Add",
    "mul": "Mul",
    "cat": "Concat",
    "upsample_nearest2d": "Resize",
    "hardswish": "HardSwish",
    "sigmoid": "Sigmoid",
    "mean": "ReduceMean",
    "adaptive_avg_pool2d": "GlobalAveragePool",
}


def float_nodes(model, layers: list[str]) -> list[str]:
    """The ONNX nodes of ``layers``, the quantize stage's names for what it kept in float: a
    layer with weights is the node that reads ``<layer>.weight``; a layer without is
    ``<module path>:<op>`` (``#k`` for the k-th such operation of the module), matched by
    the module path the exporter recorded on the node. A layer not found is an error: the
    file would otherwise quantize what the stage measured in float."""
    import ast

    by_weight = {i: n.name for n in model.graph.node for i in n.input[1:2]}
    in_module: dict[tuple[str, str], list[str]] = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))
        if len(scopes) >= 2:
            in_module.setdefault((scopes[-2], node.op_type), []).append(node.name)
    found, missing = [], []
    for layer in layers:
        if f"{layer}.weight" in by_weight:
            found.append(by_weight[f"{layer}.weight"])
            continue
        path, _, op = layer.rpartition(":")
        op, _, k = op.partition("#")
        nodes = in_module.get((path, _ONNX_OP.get(op, op)), [])
        index = int(k or 1) - 1
        if index < len(nodes):
            found.append(nodes[index])
        else:
            missing.append(layer)
    if missing:
        raise UnsupportedOperationError(
            f"onnx:int8: the layer(s) {', '.join(missing)} that the quantize stage kept in "
            "float have no node in the ONNX graph to keep in float"
        )
    return found


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
