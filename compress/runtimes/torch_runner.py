"""The PyTorch model itself (float, pruned or PT2E-quantized), the reference for every file."""

from __future__ import annotations

from typing import Any

import torch

from compress.runtimes import Runner


class TorchRunner(Runner):
    def __init__(self, model: torch.nn.Module, threads: int = 1) -> None:
        from compress.stages.base import set_eval

        self.name, self.threads, self.model = "PyTorch (eager)", threads, model
        set_eval(model)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(images).float()

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        return image.contiguous()

    def invoke(self, prepared: torch.Tensor) -> Any:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                return self.model(prepared)
        finally:
            torch.set_num_threads(previous)

    def outputs(self, raw: Any) -> torch.Tensor:
        return raw.float()
