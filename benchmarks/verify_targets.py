"""The verification targets, checked on a run folder's report.json (from `make demo`).

- int8 TFLite: latency p50 at 1 thread <= 0.5x the fastest float TFLite file's (same layout,
  the run's), and its AP drop measured in LiteRT <= 0.5 points;
- int8 ONNX faster than fp32 ONNX (p50, 1 thread);
- Core ML fp16 through the MIL reference executor within 0.2 AP points of the float model.

Every figure is from the same run on the same machine (report.json records the device).

Run: .venv/bin/python benchmarks/verify_targets.py exported/pose-mobile
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def p50(row: dict, threads: int = 1) -> float:
    return next(lat["median_ms"] for lat in row["latency"] if lat["threads"] == threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    report = json.loads((args.run / "report.json").read_text())
    verification = report.get("verification")
    if not verification:
        sys.exit(f"error: {args.run}/report.json has no verification (the recipe needs checks)")
    rows = {r["target"]: r for r in verification["artifacts"] if r["status"] != "runtime failed"}
    print(f"{args.run}: measured on {verification['device']}")
    results = []
    # The float TFLite files (fp16 stores weights in fp16 and computes in fp32), in the
    # layout the run exported (recipe `export.nhwc`); the file name says which.
    fp32 = {t: p50(r) for t, r in rows.items() if t in ("tflite:fp32", "tflite:fp16")}
    if "tflite:int8" in rows and fp32:
        best = min(fp32, key=fp32.get)
        int8 = rows["tflite:int8"]
        ratio = p50(int8) / fp32[best]
        results.append((ratio <= 0.5, f"tflite:int8 {int8['file']} p50 {p50(int8):.3f} ms = "
                        f"{ratio:.2f}x the fastest float TFLite ({rows[best]['file']}, "
                        f"{fp32[best]:.3f} ms); target <= 0.5x"))  # fmt: skip
        drop = int8["drop"]["ap"]
        results.append((drop <= 0.5, f"tflite:int8 AP drop in LiteRT {drop:.2f} points; "
                        "target <= 0.5"))  # fmt: skip
    if "onnx:int8" in rows and "onnx:fp32" in rows:
        a, b = p50(rows["onnx:int8"]), p50(rows["onnx:fp32"])
        results.append((a < b, f"onnx:int8 p50 {a:.3f} ms vs onnx:fp32 {b:.3f} ms "
                        f"({a / b:.2f}x); target faster"))  # fmt: skip
    if "coreml:fp16" in rows:
        row = rows["coreml:fp16"]
        drop = row["drop"]["ap"]
        line = (f"coreml:fp16 AP {row['metrics']['ap']:.4f}, AP drop {drop:.2f} points "
                f"({row['runtime']}); target within 0.2")  # fmt: skip
        results.append((abs(drop) <= 0.2, line))
    for ok, line in results:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    return 0 if results and all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
