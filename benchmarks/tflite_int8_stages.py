"""Where int8 TFLite gains its speed and where it does not: latency by backbone stage.

Cuts the backbone of a network (default: a `pocket run` folder's pruned `float` checkpoint)
after several blocks, exports each prefix to TFLite as fp32 and as plain-PTQ int8 (NHWC, int8
input and output, as the default recipe exports), and measures p50 latency in the LiteRT
interpreter at 1 thread (invocations only: copying out a prefix's large output would
favour int8), every file in turn, three rounds, keeping each file's fastest round.
The difference between consecutive prefixes is the time of the blocks in between, so the
table shows how much faster int8 runs each part of the network. The last row is the whole
network with its head.

Run: POCKET_CACHE=.cache .venv/bin/python benchmarks/tflite_int8_stages.py [RUN/float]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
from tflite_upsample import p50_ms  # invoke() alone: no output copy, which favours int8

from compress.data.coco import CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.export.tflite import _pt2e_config, _strict_qdq, concat_upsampling, int8_io
from compress.models.bundle import load_bundle
from compress.stages.quantize import base_quantizer, calibration_batches, ptq


def to_tflite(module: torch.nn.Module, example: torch.Tensor, quantizer=None) -> bytes:
    import litert_torch

    module = litert_torch.to_channel_last_io(
        concat_upsampling(module, example), args=[0], outputs=[0]
    )
    nhwc = example.permute(0, 2, 3, 1).contiguous()
    if quantizer is None:
        return bytes(litert_torch.convert(module, (nhwc,)).model_content())
    with _strict_qdq():
        edge = litert_torch.convert(module, (nhwc,), quant_config=_pt2e_config(quantizer))
    return int8_io(bytes(edge.model_content()))


def pair(module: torch.nn.Module, batches: list[torch.Tensor]) -> tuple[bytes, bytes]:
    """(fp32, plain-PTQ int8) TFLite files of ``module``."""
    module = copy.deepcopy(module).eval()
    example = batches[0][:1]
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        module, (batches[0][:2],), dynamic_shapes=({0: batch},), strict=True
    ).module()
    quantizer = base_quantizer("histogram", per_channel=True, qat=False)
    quantized = ptq(program, quantizer, batches, lambda _unit: True)
    return to_tflite(module, example), to_tflite(quantized, example, quantizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("float", nargs="?", type=Path, default=Path("exported/pose-mobile/float"))
    parser.add_argument("--cuts", default="1,2,3,5,8,12,15", help="blocks in each prefix")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle(args.float)
    network = bundle.model.eval()
    _, val_split = synthetic_splits(3000, 300, 1, 256)
    batches = calibration_batches(CocoPoseDataset(val_split, bundle.spec), 64, seed=0)
    cuts = [int(c) for c in args.cuts.split(",")]
    blocks = len(network.backbone)
    if any(not 0 < c < blocks for c in cuts) or cuts != sorted(set(cuts)):
        parser.error(f"--cuts must rise from 1 to {blocks - 1} (the backbone has {blocks} blocks)")
    parts = {f"backbone[:{c}]": network.backbone[:c] for c in cuts}
    parts["backbone"] = network.backbone
    parts["whole network"] = network
    with tempfile.TemporaryDirectory(prefix="int8-stages-") as tmp:
        files: dict[str, tuple[Path, Path]] = {}
        for k, (name, module) in enumerate(parts.items()):
            paths = Path(tmp) / f"{k}-fp32.tflite", Path(tmp) / f"{k}-int8.tflite"
            for path, data in zip(paths, pair(module, batches), strict=True):
                path.write_bytes(data)
            files[name] = paths
        times: dict[str, list[list[float]]] = {name: [[], []] for name in files}
        for _ in range(3):
            for name, (fp32, int8) in files.items():
                times[name][0].append(p50_ms(fp32))
                times[name][1].append(p50_ms(int8))
    print(f"{args.float}: p50 ms at 1 thread, NHWC, fastest of 3 rounds")
    print(
        f"{'prefix':16} {'fp32':>7} {'int8':>7} {'int8/fp32':>9}   {'blocks added':14} "
        f"{'fp32':>7} {'int8':>7} {'int8/fp32':>9}"
    )
    previous, last_cut = (0.0, 0.0), 0
    for name, (fp32_runs, int8_runs) in times.items():
        fp32, int8 = min(fp32_runs), min(int8_runs)
        if name == "whole network":
            added = "head"
        else:
            cut = blocks if name == "backbone" else int(name.split(":")[1][:-1])
            added = f"{last_cut}-{cut - 1}" if cut - 1 > last_cut else f"{last_cut}"
            last_cut = cut
        d32, d8 = fp32 - previous[0], int8 - previous[1]
        print(
            f"{name:16} {fp32:7.3f} {int8:7.3f} {int8 / fp32:8.2f}x   {added:14} "
            f"{d32:7.3f} {d8:7.3f} {d8 / d32 if d32 > 0 else float('nan'):8.2f}x"
        )
        previous = (fp32, int8)


if __name__ == "__main__":
    main()
