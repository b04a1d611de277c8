"""What a network is: parameters, multiply-accumulates at its input size, layers and shapes.

MACs come from PyTorch's own FlopCounterMode (FLOPs / 2), per module and in total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from compress.pose.spec import PoseSpec


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    params: int
    macs: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, spec: PoseSpec) -> int:
    return summarize(model, spec, layers=False).macs


def summarize(model: nn.Module, spec: PoseSpec, layers: bool = True) -> ModelSummary:
    """Run one image of the spec's input size through ``model`` (in eval mode, no grad)."""
    x = torch.zeros(1, 3, *spec.input_size)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    if layers:
        for name, module in model.named_modules():
            if name and not list(module.children()):

                def hook(mod, inputs, output, name=name):
                    if isinstance(output, torch.Tensor):
                        shapes[name] = tuple(output.shape)

                handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    infos = []
    if layers:
        for name, module in model.named_modules():
            if name in shapes:
                flops = sum(counts.get(f"{prefix}.{name}", {}).values())
                infos.append(
                    LayerInfo(
                        name, type(module).__name__, shapes[name], count_params(module), flops // 2
                    )
                )
    return ModelSummary(
        params=count_params(model),
        macs=counter.get_total_flops() // 2,
        input_shape=tuple(x.shape),
        output_shape=tuple(out.shape),
        layers=infos,
    )
