"""Weight reconstruction after channel pruning (He et al. 2017, ThiNet; Qualcomm AIMET's
channel pruning does the same): a layer that lost input channels gets new weights, fitted by
least squares so that, fed the *pruned* network's activations, it gives back the output the
layer had before the channels went.

Layers are refitted in the order the network runs them, so each fit sees the activations its
already-refitted predecessors produce and errors do not pile up. Only dense layers are
refitted (convolutions with ``groups=1``, via their unfolded patches, and linear layers); a
depthwise convolution that lost channels lost its outputs too, and is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Stop(Exception):
    """Raised by a hook once it has what it needs: the rest of the forward pass is not run."""


def refittable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)  # 'same'/'valid': unfold needs numbers
    )


def in_features(module: nn.Module) -> int:
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


def _run_hooked(model: nn.Module, images: Tensor, hooks: dict[str, Callable]) -> None:
    """One forward pass (no gradients) with a forward hook on each named layer; a hook may
    raise ``_Stop`` to skip the rest of the pass."""
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(hook) for n, hook in hooks.items()]
    try:
        with torch.no_grad():
            model(images)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()


def execution_order(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the leaf modules in the order one forward pass calls them. A module called
    more than once (shared weights) is left out: one fit cannot serve several inputs."""
    order: list[str] = []
    leaves = [n for n, m in model.named_modules() if not list(m.children())]
    _run_hooked(model, example, {n: lambda _m, _i, _o, n=n: order.append(n) for n in leaves})
    return [n for n in dict.fromkeys(order) if order.count(n) == 1]


def _rows(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's input as one row per output position: (positions, in_features [* k*k])."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    patches = F.unfold(
        x, module.kernel_size, module.dilation, module.padding, module.stride
    )  # (N, C*kh*kw, L)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _targets(module: nn.Module, y: Tensor) -> Tensor:
    if isinstance(module, nn.Linear):
        return y.reshape(-1, y.shape[-1])
    return y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])


def _capture_input(model: nn.Module, name: str, images: Tensor) -> Tensor:
    """The input of layer ``name`` (the rest of the forward pass is skipped)."""
    seen: list[Tensor] = []

    def hook(_m, inputs, _output):
        seen.append(inputs[0])
        raise _Stop

    _run_hooked(model, images, {name: hook})
    return seen[0]


def _capture_outputs(
    model: nn.Module, channels: dict[str, list[int] | None], images: Tensor
) -> dict[str, Tensor]:
    """The outputs of the layers ``channels`` names, at the channels it lists, in one pass."""
    seen: dict[str, Tensor] = {}

    def keep(name: str, output: Tensor) -> None:
        wanted = channels[name]
        seen[name] = output if wanted is None else output[:, wanted]

    _run_hooked(model, images, {n: lambda _m, _i, out, n=n: keep(n, out) for n in channels})
    return seen


def refit(
    pruned: nn.Module,
    reference: nn.Module,
    names: Iterable[str],
    batches: list[Tensor],
    kept_outputs: dict[str, list[int]] | None = None,
    ridge: float = 1e-3,
) -> dict[str, tuple[float, float]]:
    """Refit each layer ``names`` lists (in execution order) to reproduce ``reference``'s
    output of the same-named layer, at the output channels ``kept_outputs`` lists for it (all
    of them when it has no entry). Both networks are run in eval mode on ``batches``.

    ``ridge`` is relative to the mean input energy, so it does not depend on the layer's
    scale. Returns each layer's relative output error (squared error over the reference
    output's energy, on the first batch) before and after its fit, for the report.
    """
    names = list(names)
    pruned_modules = dict(pruned.named_modules())
    was_training = pruned.training, reference.training
    pruned.eval()
    reference.eval()
    channels = {n: (kept_outputs or {}).get(n) for n in names}
    errors: dict[str, tuple[float, float]] = {}
    try:
        # The reference does not change: one pass per batch gives every layer's target.
        targets = [_capture_outputs(reference, channels, images) for images in batches]
        for name in names:
            module = pruned_modules[name]
            bias = getattr(module, "bias", None) is not None
            gram = cross = None
            first: tuple[Tensor, Tensor] | None = None
            for images, wanted in zip(batches, targets, strict=True):
                x = _rows(module, _capture_input(pruned, name, images)).double()
                if bias:
                    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
                y = _targets(module, wanted[name]).double()
                first = first or (x, y)
                g, c = x.T @ x, x.T @ y
                gram, cross = (g, c) if gram is None else (gram + g, cross + c)
            assert gram is not None and cross is not None and first is not None
            old = _as_matrix(module, bias)
            damping = ridge * gram.diagonal().mean().clamp_min(1e-12)
            solution = torch.linalg.solve(
                gram + damping * torch.eye(len(gram), dtype=gram.dtype), cross
            )  # (features [+ 1], outputs)
            with torch.no_grad():
                weight = solution[:-1] if bias else solution
                module.weight.copy_(weight.T.reshape(module.weight.shape).to(module.weight))
                if bias:
                    module.bias.copy_(solution[-1].to(module.bias))
            x, y = first
            energy = float((y**2).sum().clamp_min(1e-12))
            errors[name] = (
                float(((x @ old - y) ** 2).sum()) / energy,
                float(((x @ solution - y) ** 2).sum()) / energy,
            )
    finally:
        pruned.train(was_training[0])
        reference.train(was_training[1])
    return errors


def _as_matrix(module: nn.Module, bias: bool) -> Tensor:
    """The layer's weights (and bias) as the (features [+ 1], outputs) matrix ``_rows`` use."""
    weight = module.weight.detach().reshape(module.weight.shape[0], -1).T.double()
    if bias:
        weight = torch.cat([weight, module.bias.detach().double()[None]], dim=0)
    return weight
