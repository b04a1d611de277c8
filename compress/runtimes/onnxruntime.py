"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import RuntimeFailure
from compress.runtimes import Runner


class OnnxRunner(Runner):
    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.name, self.threads, self.path = "ONNX Runtime (CPU provider)", threads, Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        start = time.perf_counter()
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types
            raise RuntimeFailure(f"{path}: ONNX Runtime cannot load the file: {exc}") from None
        self.load_seconds = time.perf_counter() - start
        self.input = self.session.get_inputs()[0].name

    def prepare(self, image: torch.Tensor) -> dict[str, np.ndarray]:
        return {self.input: np.ascontiguousarray(image.numpy().astype(np.float32))}

    def invoke(self, prepared: dict[str, np.ndarray]) -> Any:
        return self.session.run(None, prepared)[0]

    def outputs(self, raw: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(raw, dtype=np.float32))
