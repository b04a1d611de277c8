"""Training throughput of the student on this CPU: memory layout and bf16 autocast.

Times forward + backward + AdamW steps on random 160x128 batches (no data loading), so the
numbers isolate the network's compute. Every variant runs in the same process. The student
has no skip connections (skips=False), as when this was measured.

Run: .venv/bin/python benchmarks/train_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from compress.models import build_architecture
from compress.pose.spec import coco17
from compress.stages.losses import softmax_cross_entropy


def samples_per_second(channels_last: bool, bf16: bool, batch: int, steps: int) -> float:
    spec = coco17(160, 128, heatmap_activation="softmax")
    torch.manual_seed(0)
    model = build_architecture("mobilepose", spec, skips=False)
    x = torch.randn(batch, 3, 160, 128)
    target = torch.rand(batch, 17, 40, 32)
    weights = torch.ones(batch, 17)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters())
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()  # the first step warms up oneDNN
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = softmax_cross_entropy(out.float(), target, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = f"batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}"
    print(f"mobilepose 160x128, {setup}")
    base = None
    for channels_last in (False, True):
        for bf16 in (False, True):
            rate = samples_per_second(channels_last, bf16, args.batch, args.steps)
            base = base or rate
            layout = "channels_last" if channels_last else "NCHW         "
            print(f"{layout}  bf16={bf16!s:5}  {rate:6.1f} samples/s  ({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
