"""Runners: one interface for every runtime that runs a pose network.

A runner maps a float32 NCHW batch to the model's raw outputs (float32 NCHW), whatever the
file's own layout and dtype, so the float model and every artifact are scored by the same
``evaluate()``. For latency, ``prepare`` turns one image into the runtime's own input once and
``invoke`` runs it, so input preparation is never timed.
"""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch


def host_cpu() -> str:
    """The CPU model of this machine, for labelling every measured figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Runner(ABC):
    """``runner(images)`` -> outputs; ``name`` says which runtime and executor produced them."""

    name: str
    threads: int
    load_seconds: float = 0.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.outputs(self.invoke(self.prepare(image[None]))) for image in images])

    @abstractmethod
    def prepare(self, image: torch.Tensor) -> Any:
        """One float32 NCHW image (batch of 1) to the runtime's own input."""

    @abstractmethod
    def invoke(self, prepared: Any) -> Any:
        """Run the model once on a prepared input; returns the runtime's raw output."""

    @abstractmethod
    def outputs(self, raw: Any) -> torch.Tensor:
        """The runtime's raw output to float32 NCHW."""

    @property
    def label(self) -> str:
        return f"{self.name}, {self.threads} thread(s), {host_cpu()}"


def runner_for(path_or_model: Any, threads: int = 1) -> Runner:
    """The runner for a file (by suffix) or an in-memory torch module."""
    if isinstance(path_or_model, torch.nn.Module):
        from compress.runtimes.torch_runner import TorchRunner

        return TorchRunner(path_or_model, threads)
    path = Path(path_or_model)
    if path.suffix == ".tflite":
        from compress.runtimes.litert import LiteRTRunner

        return LiteRTRunner(path, threads)
    if path.suffix == ".onnx":
        from compress.runtimes.onnxruntime import OnnxRunner

        return OnnxRunner(path, threads)
    if path.suffix == ".mlpackage":
        if platform.system() == "Darwin":
            from compress.runtimes.coreml import CoremlRunner

            return CoremlRunner(path, threads)
        from compress.runtimes.mil import CoremlReferenceRunner

        return CoremlReferenceRunner(path, threads)
    from compress.errors import RuntimeFailure

    raise RuntimeFailure(f"{path}: no runner for {path.suffix or 'this file'} files")
