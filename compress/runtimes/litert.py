"""The LiteRT interpreter (XNNPACK by default), as the Android app runs the file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import RuntimeFailure
from compress.runtimes import Runner


class LiteRTRunner(Runner):
    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.name, self.threads, self.path = "LiteRT interpreter (XNNPACK)", threads, Path(path)
        start = time.perf_counter()
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"{path}: LiteRT cannot load the file: {exc}") from None
        self.load_seconds = time.perf_counter() - start
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()
        shape = list(self.input["shape"])
        self.nhwc = shape[-1] == 3 and shape[1] != 3

    def prepare(self, image: torch.Tensor) -> np.ndarray:
        x = image.permute(0, 2, 3, 1).numpy() if self.nhwc else image.numpy()
        x = x.astype(np.float32)
        if self.input["dtype"] != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        return np.ascontiguousarray(x.astype(self.input["dtype"]))

    def invoke(self, prepared: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def outputs(self, raw: Any) -> torch.Tensor:
        out = np.asarray(raw)
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        out = torch.from_numpy(np.array(out, dtype=np.float32))
        return out.permute(0, 3, 1, 2) if self.nhwc else out
