"""Every export variant of the shipped student: time, size, and int8 size against fp32.

The quantized network comes from the quantize stage with its defaults (256 calibration
images of the synthetic train split); its time is reported apart from the export time.
Each file is loaded in its runtime once (TFLite, ONNX) or reloaded and parsed (Core ML).

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/export_all.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.export import ExportContext, ExportOptions, formats, parse_targets
from compress.export.metadata import pose_metadata
from compress.export.run import export_targets
from compress.models.zoo import resolve_model
from compress.stages.base import StageContext
from compress.stages.configs import QuantizeConfig
from compress.stages.quantize import quantize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="student")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = resolve_model(args.model)
    train_split, val_split = synthetic_splits(3000, 300, 1, 256)
    train = CocoPoseDataset(train_split, bundle.spec, augment=AugmentConfig())
    val = CocoPoseDataset(val_split, bundle.spec)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        context = StageContext(train, val, Path(tmp), console=Console(quiet=True))
        quantized, _ = quantize(bundle, QuantizeConfig(), context)
        quantize_seconds = time.perf_counter() - start
        targets = parse_targets(
            f"{name}:{variant}" for name, cls in formats().items() for variant in cls.variants
        )
        options = ExportOptions(coreml_target="iOS18")  # palette4 needs iOS 18
        export_context = ExportContext(
            bundle,
            pose_metadata(bundle, args.model),
            quantized,
            quantized.quantization.calibration,
            options,
        )
        start = time.perf_counter()
        result = export_targets(export_context, targets, Path(tmp), Console(quiet=True))
        export_seconds = time.perf_counter() - start
        sizes = {str(a.target): a.bytes for a in result.artifacts}
        print(f"{'target':22} {'MB':>7} {'s':>6}  of fp32")
        for a in result.artifacts:
            base = sizes.get(f"{a.format}:fp32") or sizes.get(f"{a.format}:fp16")
            ratio = f"{a.bytes / base:6.1%}" if base else ""
            print(f"{a.target!s:22} {a.bytes / 1e6:7.2f} {result.seconds[str(a.target)]:6.1f}"
                  f"  {ratio}")  # fmt: skip
            for note in a.notes:
                print(f"{'':24}{note}")
        for target, error in result.failures.items():
            print(f"{target:22} FAILED {error}")
        for a in result.artifacts:
            if a.variant == "int8" and a.format in ("tflite", "onnx"):
                fp32 = sizes[f"{a.format}:fp32"]
                parts = (_tflite_parts if a.format == "tflite" else _onnx_parts)(a.path)
                print(f"{a.target!s} bytes by kind, % of the fp32 file: " + ", ".join(
                    f"{k} {v / fp32:.1%}" for k, v in parts.items()))  # fmt: skip
    print(f"quantize stage: {quantize_seconds:.1f} s; exporting all {len(targets)} variants: "
          f"{export_seconds:.1f} s ({args.threads} threads)")  # fmt: skip
    return 1 if result.failures else 0


def _tflite_parts(path: Path) -> dict[str, int]:
    """Where an int8 .tflite's bytes go: tensor data by type, quantization parameters
    (float32 scales, int64 zero points; each distinct vector once, as pocket stores them),
    tensor names, the rest."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    types = {0: "float32 data", 2: "int32 data", 9: "int8 data"}
    parts: dict[str, int] = {}
    stored: set[tuple] = set()
    for tensor in model.subgraphs[0].tensors:
        buffer = model.buffers[tensor.buffer].data
        kind = types.get(tensor.type, "other data")
        parts[kind] = parts.get(kind, 0) + (0 if buffer is None else len(buffer))
        q = tensor.quantization
        for values, width in ((None if q is None else q.scale, 4),
                              (None if q is None else q.zeroPoint, 8)):  # fmt: skip
            key = (width, None if values is None else np.asarray(values).tobytes())
            if values is not None and key not in stored:
                stored.add(key)
                parts["quant params"] = parts.get("quant params", 0) + width * len(values)
        parts["names"] = parts.get("names", 0) + len(tensor.name or b"")
    parts["rest"] = len(data) - sum(parts.values())
    return parts


def _onnx_parts(path: Path) -> dict[str, int]:
    """Where an int8 .onnx's bytes go: initializers by dtype (float32 ones are the
    per-channel scales), the rest (graph, names, metadata)."""
    import onnx

    model = onnx.load(str(path))
    parts: dict[str, int] = {}
    for tensor in model.graph.initializer:
        array = onnx.numpy_helper.to_array(tensor)
        kind = f"{array.dtype} initializers"
        parts[kind] = parts.get(kind, 0) + array.nbytes
    parts["rest"] = path.stat().st_size - sum(parts.values())
    return parts


if __name__ == "__main__":
    raise SystemExit(main())
