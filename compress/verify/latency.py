"""One latency harness for every runtime: load time apart, warm-up, timed runs, percentiles.

Input preparation happens once, before timing; only the runtime's own invocation is timed.
Every figure carries the runtime, the thread count and the host CPU that produced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from compress.runtimes import Runner, host_cpu


@dataclass(frozen=True)
class Latency:
    runtime: str
    threads: int
    device: str
    load_seconds: float
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    make_runner: Callable[[int], Runner],
    image: torch.Tensor,
    threads: int = 1,
    warmup: int = 10,
    runs: int = 50,
) -> Latency:
    """Time ``runs`` invocations on one image (batch of 1) after ``warmup`` untimed ones."""
    runner = make_runner(threads)
    prepared = runner.prepare(image[None] if image.dim() == 3 else image[:1])
    for _ in range(warmup):
        runner.invoke(prepared)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        runner.invoke(prepared)
        times[i] = (time.perf_counter_ns() - start) / 1e6
    return Latency(
        runtime=runner.name,
        threads=threads,
        device=host_cpu(),
        load_seconds=runner.load_seconds,
        runs=runs,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        min_ms=float(times.min()),
        mean_ms=float(times.mean()),
    )
