"""Synthetic generator images/s and COCO loader samples/s on this machine.

Run: make bench-data   (or: .venv/bin/python benchmarks/data_speed.py --images 400)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.synth import generate_dataset
from compress.pose.spec import coco17
from compress.runtimes import host_cpu


def bench_generator(root: Path, images: int, workers: int) -> float:
    start = time.perf_counter()
    generate_dataset(root, {"train": images}, seed=0, workers=workers, force=True)
    return images / (time.perf_counter() - start)


def bench_loader(root: Path, augment: bool, workers: int, batches: int = 12) -> float:
    ds = CocoPoseDataset.from_folder(
        root, "train", coco17(), augment=AugmentConfig() if augment else None
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            seen += len(next(it)["image"])
        except StopIteration:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400, help="images to generate per run")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads()
    print(f"host: {host_cpu()}, {cores} cores, torch {torch.__version__}, {threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        for workers in sorted({1, cores}):
            rate = bench_generator(root, args.images, workers)
            what = f"256x256, {args.images} images, {workers} process(es)"
            print(f"generator  {what}: {rate:7.1f} images/s")
        for augment in (False, True):
            for workers in sorted({0, cores}):
                rate = bench_loader(root, augment, workers)
                label = "train (augmented)" if augment else "eval (no augment) "
                what = f"{label} 256x192 crops + heatmaps, {workers} workers"
                print(f"loader     {what}: {rate:7.1f} samples/s")


if __name__ == "__main__":
    main()
