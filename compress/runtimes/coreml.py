"""Core ML's own prediction, on macOS (where Core ML runs).

Not exercised on Linux, where ``runner_for`` uses the MIL reference executor instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import RuntimeFailure
from compress.runtimes import Runner


class CoremlRunner(Runner):
    def __init__(self, path: Path, threads: int = 1) -> None:
        import coremltools as ct

        self.name, self.threads, self.path = "Core ML (CPU only)", threads, Path(path)
        start = time.perf_counter()
        try:
            self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        except Exception as exc:  # coremltools raises many types
            raise RuntimeFailure(f"{path}: Core ML cannot load the package: {exc}") from None
        self.load_seconds = time.perf_counter() - start
        description = self.model.get_spec().description
        self.input = description.input[0].name
        self.output = description.output[0].name
        self.image = description.input[0].type.WhichOneof("Type") == "imageType"
        from compress.runtimes.mil import image_input_normalization

        self.pixels = image_input_normalization(self.path)

    def prepare(self, image: torch.Tensor) -> dict[str, Any]:
        if self.image:
            from PIL import Image

            if self.pixels is not None:
                mean, std = self.pixels
                image = image * std + mean
            pixels = image[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
            return {self.input: Image.fromarray(pixels)}
        return {self.input: image.numpy().astype(np.float32)}

    def invoke(self, prepared: dict[str, Any]) -> Any:
        return self.model.predict(prepared)[self.output]

    def outputs(self, raw: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(raw, dtype=np.float32))
