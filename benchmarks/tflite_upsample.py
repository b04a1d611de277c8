"""What the concatenation form of nearest upsampling buys in LiteRT, and how int8 compares.

Exports a float network (default: a `pocket run` folder's `float` checkpoint) and its plain
PTQ int8 network (the quantize stage's defaults, no layer kept in float) to TFLite, NCHW
and NHWC, once with nearest 2x upsampling as pocket converts it (CONCATENATION + RESHAPE,
all delegated to XNNPACK) and once as RESIZE_NEAREST_NEIGHBOR (left to LiteRT's plain
kernel), then measures p50 latency at 1 thread, every file in turn, three times.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/tflite_upsample.py [RUN/float]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.export import ExportContext, ExportOptions, exporter
from compress.export import tflite as tflite_export
from compress.export.metadata import pose_metadata
from compress.models.bundle import load_bundle
from compress.stages.base import StageContext
from compress.stages.configs import QuantizeConfig
from compress.stages.quantize import quantize


def p50_ms(path: Path, runs: int = 300) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    given = interpreter.get_input_details()[0]
    image = np.random.default_rng(0).standard_normal(given["shape"]).astype(given["dtype"])
    interpreter.set_tensor(given["index"], image)
    for _ in range(30):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("float", nargs="?", type=Path, default=Path("exported/pose-mobile/float"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundle = load_bundle(args.float)
    train_split, val_split = synthetic_splits(3000, 300, 1, 256)
    train = CocoPoseDataset(train_split, bundle.spec, augment=AugmentConfig())
    val = CocoPoseDataset(val_split, bundle.spec)
    rewrite = tflite_export.concat_upsampling
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        context = StageContext(train, val, Path(tmp), console=Console(quiet=True))
        quantized, _ = quantize(bundle, QuantizeConfig(), context)
        for form, convert in (("concat", rewrite), ("resize", lambda module, _example: module)):
            tflite_export.concat_upsampling = convert
            try:
                for nhwc in (False, True):
                    folder = Path(tmp) / f"{form}-{nhwc}"
                    folder.mkdir()
                    export = ExportContext(
                        bundle,
                        pose_metadata(bundle, "net"),
                        quantized,
                        quantized.quantization.calibration,
                        ExportOptions(nhwc=nhwc),
                    )
                    for variant in ("fp32", "int8"):
                        artifact = exporter("tflite").export(export, variant, folder)
                        files[f"{variant} {'NHWC' if nhwc else 'NCHW'} {form}"] = artifact.path
            finally:
                tflite_export.concat_upsampling = rewrite
        times: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(3):
            for name, path in files.items():
                times[name].append(p50_ms(path))
    best = {name: min(values) for name, values in times.items()}
    print(f"{'file':24} p50 ms (3 rounds)        int8 / fp32 of the same form")
    for name, values in times.items():
        variant, layout, form = name.split()
        ratio = ""
        if variant == "int8":
            ratio = f"{best[name] / best[f'fp32 {layout} {form}']:.2f}x"
        print(f"{name:24} {'  '.join(f'{v:.3f}' for v in values)}   {ratio}")


if __name__ == "__main__":
    main()
