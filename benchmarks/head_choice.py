"""Which student head: nearest-upsample + conv, or transposed convolution?

Exports the student with each head to TFLite (litert-torch, fp32) and ONNX (torch.onnx dynamo,
fp32) and times them in their runtimes (LiteRT interpreter with XNNPACK, ONNX Runtime CPU),
one thread, same process, interleaved so machine noise hits both alike. Both heads are
measured without skip connections (skips=False), as they were when the head was chosen.

Run: .venv/bin/python benchmarks/head_choice.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from compress.models import build_architecture
from compress.models.inspect import summarize
from compress.pose.spec import coco17


def time_runs(run, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()

    import litert_torch
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    torch.set_num_threads(1)
    spec = coco17(args.height, args.width)
    x = torch.randn(1, 3, args.height, args.width)
    runners, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for head in ("upsample", "deconv"):
            torch.manual_seed(0)
            model = build_architecture("mobilepose", spec, head=head, skips=False).eval()
            summary = summarize(model, spec, layers=False)
            tflite = Path(tmp) / f"{head}.tflite"
            litert_torch.convert(model, (x,)).export(str(tflite))
            interpreter = Interpreter(model_path=str(tflite), num_threads=1)
            interpreter.allocate_tensors()
            inp = interpreter.get_input_details()[0]["index"]
            out = interpreter.get_output_details()[0]["index"]
            x_np = x.numpy()

            def run_tflite(interpreter=interpreter, inp=inp, x_np=x_np):
                interpreter.set_tensor(inp, x_np)
                interpreter.invoke()

            onnx_path = Path(tmp) / f"{head}.onnx"
            torch.onnx.export(model, (x,), str(onnx_path), dynamo=True, optimize=True)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
            name = session.get_inputs()[0].name

            def run_onnx(session=session, name=name, x_np=x_np):
                session.run(None, {name: x_np})

            with torch.no_grad():
                reference = model(x).numpy()
            run_tflite()
            err_tflite = float(np.abs(interpreter.get_tensor(out) - reference).max())
            err_onnx = float(np.abs(session.run(None, {name: x_np})[0] - reference).max())
            runners[(head, "tflite")] = run_tflite
            runners[(head, "onnx")] = run_onnx
            rows[head] = {
                "gmacs": summary.gmacs,
                "params": summary.params,
                "tflite_mb": tflite.stat().st_size / 1e6,
                # The dynamo exporter may keep weights in a side file: count every part.
                "onnx_mb": sum(p.stat().st_size for p in Path(tmp).glob(f"{head}.onnx*")) / 1e6,
                "err_tflite": err_tflite,
                "err_onnx": err_onnx,
            }
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for _ in range(3):  # interleave rounds so drift in machine load hits every variant
            for key, run in runners.items():
                samples[key] += time_runs(run, warmup=5, runs=args.runs // 3)
    size = f"{args.height}x{args.width}"
    print(f"student (mobilepose) at {size}, fp32, 1 thread, {args.runs} timed runs each")
    print(f"{'head':9} {'GMACs':>6} {'params':>9} {'tflite MB':>9} {'onnx MB':>8} "
          f"{'tflite p50 ms':>13} {'onnx p50 ms':>11} {'max|err| tfl/onnx':>18}")  # fmt: skip
    for head, r in rows.items():
        p50_t = statistics.median(samples[(head, "tflite")])
        p50_o = statistics.median(samples[(head, "onnx")])
        print(
            f"{head:9} {r['gmacs']:6.3f} {r['params']:9,} {r['tflite_mb']:9.2f} "
            f"{r['onnx_mb']:8.2f} {p50_t:13.2f} {p50_o:11.2f} "
            f"{r['err_tflite']:9.1e}/{r['err_onnx']:.1e}"
        )


if __name__ == "__main__":
    main()
