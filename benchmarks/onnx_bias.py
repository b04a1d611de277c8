"""ONNX int8 with int32 biases (ONNX Runtime's default, what pocket ships) against float biases
(``QuantizeBias: False``): file size against fp32, the operations ONNX Runtime's CPU provider
runs after its graph optimisations, and latency at 1 thread, interleaved in one run.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/onnx_bias.py [--model CHECKPOINT]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from compress.models.zoo import resolve_model


class Images(CalibrationDataReader):
    def __init__(self, shape: tuple[int, ...], count: int = 16) -> None:
        rng = np.random.default_rng(0)
        self._it = iter(
            {"image": rng.standard_normal(shape).astype(np.float32)} for _ in range(count)
        )

    def get_next(self):
        return next(self._it, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="student")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = resolve_model(args.model)
    shape = (1, 3, *bundle.spec.input_size)
    folder = Path(tempfile.mkdtemp())
    fp32, prepared = folder / "fp32.onnx", folder / "prepared.onnx"
    torch.onnx.export(
        bundle.model.eval(),
        (torch.zeros(shape),),
        str(fp32),
        dynamo=True,
        optimize=True,
        external_data=False,
        input_names=["image"],
    )
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    files = {"fp32": fp32}
    for name, quantize_bias in (("int8, int32 bias", True), ("int8, float bias", False)):
        files[name] = folder / f"{quantize_bias}.onnx"
        quantize_static(
            str(prepared),
            str(files[name]),
            Images(shape),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"QuantizeBias": quantize_bias},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {}
    for name, path in files.items():
        optimised = ort.SessionOptions()
        optimised.intra_op_num_threads = 1
        optimised.optimized_model_filepath = str(path.with_suffix(".optimised.onnx"))
        sessions[name] = ort.InferenceSession(
            str(path), optimised, providers=["CPUExecutionProvider"]
        )
    x = {"image": np.zeros(shape, np.float32)}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(20):
        for session in sessions.values():
            session.run(None, x)
    for _ in range(args.runs):  # interleaved, so drift on a shared machine hits all alike
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, x)
            times[name].append(time.perf_counter() - start)
    size = fp32.stat().st_size
    for name, path in files.items():
        ops = Counter(
            n.op_type for n in onnx.load(str(path.with_suffix(".optimised.onnx"))).graph.node
        )
        print(
            f"{name:18s} {path.stat().st_size / size:6.1%} of fp32  "
            f"p50 {1e3 * np.median(times[name]):.3f} ms  runs as {dict(ops.most_common(3))}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
