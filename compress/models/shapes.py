"""Channel counts of a network's layers, so a pruned network can be saved and rebuilt.

Structured pruning leaves an architecture whose constructor arguments no longer describe it.
A checkpoint then records each resized layer's channel counts; loading builds the
architecture and resizes those layers before the weights go in. Nothing is unpickled.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.errors import ModelError

Shapes = dict[str, dict[str, int]]


def _shape_of(module: nn.Module) -> dict[str, int] | None:
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        return {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "groups": module.groups,
        }
    if isinstance(module, nn.BatchNorm2d):
        return {"num_features": module.num_features}
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features}
    return None


def layer_shapes(model: nn.Module) -> Shapes:
    return {
        name: shape
        for name, module in model.named_modules()
        if (shape := _shape_of(module)) is not None
    }


def changed_shapes(model: nn.Module, reference: nn.Module) -> Shapes:
    """The layers of ``model`` whose channel counts differ from ``reference``'s."""
    ref = layer_shapes(reference)
    return {name: s for name, s in layer_shapes(model).items() if ref.get(name) != s}


def _empty(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape))


def apply_shapes(model: nn.Module, shapes: Shapes) -> None:
    """Resize the named layers of ``model`` in place (weights become uninitialised)."""
    modules = dict(model.named_modules())
    for name, shape in shapes.items():
        module = modules.get(name)
        if module is None or _shape_of(module) is None or set(shape) != set(_shape_of(module)):
            raise ModelError(f"checkpoint resizes layer {name!r}, which this architecture lacks")
        _resize(module, shape)


def _resize(module: Any, s: dict[str, int]) -> None:
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        cin, cout, groups = s["in_channels"], s["out_channels"], s["groups"]
        if cin % groups or cout % groups:
            raise ModelError(f"layer shape {s} has channels not divisible by groups")
        kh, kw = module.kernel_size
        module.in_channels, module.out_channels, module.groups = cin, cout, groups
        if isinstance(module, nn.ConvTranspose2d):
            module.weight = _empty(cin, cout // groups, kh, kw)
        else:
            module.weight = _empty(cout, cin // groups, kh, kw)
        if module.bias is not None:
            module.bias = _empty(cout)
    elif isinstance(module, nn.BatchNorm2d):
        n = s["num_features"]
        module.num_features = n
        if module.affine:
            module.weight, module.bias = _empty(n), _empty(n)
        if module.track_running_stats:
            module.running_mean = torch.zeros(n)
            module.running_var = torch.ones(n)
    else:  # nn.Linear
        module.in_features, module.out_features = s["in_features"], s["out_features"]
        module.weight = _empty(s["out_features"], s["in_features"])
        if module.bias is not None:
            module.bias = _empty(s["out_features"])
