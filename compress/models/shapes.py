"""Channel counts of a network's layers, so a pruned network can be saved and rebuilt.

Structured pruning leaves an architecture whose constructor arguments no longer describe it.
A checkpoint then records each resized layer's channel counts; loading builds the
architecture and resizes those layers before the weights go in. Nothing is unpickled.
Covered: convolutions and transposed convolutions (any dimension), linear layers, batch,
group and layer norm, PReLU: the layers Torch-Pruning resizes in convolutional networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.errors import ModelError

Shapes = dict[str, dict[str, Any]]


def _shape_of(module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        return {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "groups": module.groups,
        }
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features}
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return {"num_features": module.num_features}
    if isinstance(module, nn.GroupNorm):
        return {"num_groups": module.num_groups, "num_channels": module.num_channels}
    if isinstance(module, nn.LayerNorm):
        return {"normalized_shape": list(module.normalized_shape)}
    if isinstance(module, nn.PReLU):
        return {"num_parameters": module.num_parameters}
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
        current = _shape_of(module) if module is not None else None
        if current is None or set(shape) != set(current):
            raise ModelError(f"checkpoint resizes layer {name!r}, which this architecture lacks")
        _resize(module, shape)


def _resize(module: Any, s: dict[str, Any]) -> None:
    if isinstance(module, nn.modules.conv._ConvNd):
        cin, cout, groups = s["in_channels"], s["out_channels"], s["groups"]
        if cin % groups or cout % groups:
            raise ModelError(f"layer shape {s} has channels not divisible by groups")
        module.in_channels, module.out_channels, module.groups = cin, cout, groups
        if module.transposed:
            module.weight = _empty(cin, cout // groups, *module.kernel_size)
        else:
            module.weight = _empty(cout, cin // groups, *module.kernel_size)
        if module.bias is not None:
            module.bias = _empty(cout)
    elif isinstance(module, nn.Linear):
        module.in_features, module.out_features = s["in_features"], s["out_features"]
        module.weight = _empty(s["out_features"], s["in_features"])
        if module.bias is not None:
            module.bias = _empty(s["out_features"])
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        n = s["num_features"]
        module.num_features = n
        if module.affine:
            module.weight, module.bias = _empty(n), _empty(n)
        if module.track_running_stats:
            module.running_mean = torch.zeros(n)
            module.running_var = torch.ones(n)
    elif isinstance(module, nn.GroupNorm):
        module.num_groups, module.num_channels = s["num_groups"], s["num_channels"]
        if module.affine:
            module.weight, module.bias = _empty(s["num_channels"]), _empty(s["num_channels"])
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(s["normalized_shape"])
        if module.elementwise_affine:
            module.weight = _empty(*module.normalized_shape)
            if module.bias is not None:
                module.bias = _empty(*module.normalized_shape)
    else:  # nn.PReLU
        module.num_parameters = s["num_parameters"]
        module.weight = _empty(s["num_parameters"])
