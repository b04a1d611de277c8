"""Structured pruning: whole channels removed, so convolutions physically shrink.

Torch-Pruning builds the dependency graph (residual additions, depthwise groups, skip
connections, concatenations) and removes coupled channels together. Importance is L1 or L2
magnitude or first-order Taylor; the target is a channel ratio or a MACs reduction, reached
globally or uniformly over layers, in one or several rounds with fine-tuning between them
(distilled from the unpruned network). The output layer, and any layer named in ``protect``,
keeps its channels. With ``reconstruct``, each round first refits the dense layers that lost
input channels by least squares (``compress/stages/reconstruct.py``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from compress.errors import ModelError, RecipeError
from compress.models.bundle import Bundle, load_state
from compress.models.inspect import count_macs
from compress.models.shapes import apply_shapes, changed_shapes, layer_shapes
from compress.stages.base import StageContext, calibration_batches, measure
from compress.stages.configs import PruneConfig
from compress.stages.distill import distill_model, find_layers
from compress.stages.losses import heatmap_mse, softmax_cross_entropy
from compress.stages.reconstruct import execution_order, in_features, refit, refittable

# Fine steps of the pruner when a MACs target is searched for: each removes ~1 % of channels.
_SEARCH_STEPS = 100
PRUNABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _importance(kind: str) -> tp.importance.Importance:
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if kind == "l1" else 2)


def output_layers(model: nn.Module, spec) -> list[nn.Module]:
    """The layer that writes the heatmaps (its output is the network's), found by running
    the network; failing that, every layer with one output channel per joint."""
    prunable = {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}
    if not prunable:
        raise ModelError("the network has no convolution or linear layer to prune")
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out))
        for n, m in prunable.items()
    ]
    try:
        model.eval()
        with torch.no_grad():
            final = model(torch.zeros(1, 3, *spec.input_size))
    finally:
        for hook in hooks:
            hook.remove()
    exact = [prunable[n] for n, out in outputs.items() if out is final]
    if exact:
        return exact
    k = spec.num_keypoints
    return [m for m in prunable.values() if getattr(m, "out_channels", None) == k]


def protected_layers(model: nn.Module, spec, config: PruneConfig) -> list[nn.Module]:
    """The prunable layers that keep their (output) channels: the heatmap layer and those
    ``protect`` or ``protect_patterns`` name."""
    modules = dict(model.named_modules())
    named = protected_names(model, config.protect, config.protect_patterns)
    return output_layers(model, spec) + [modules[n] for n in named]


def protected_names(
    model: nn.Module, names: tuple[str, ...], patterns: tuple[str, ...], who: str = "network"
) -> list[str]:
    """Prunable layers inside the layers ``names`` lists or a ``patterns`` regex finds. A name
    or pattern that matches no layer is an error, as is a pattern that does not compile."""
    try:
        find_layers(model, names, who)
    except RecipeError as exc:
        raise RecipeError(f"prune.protect: {exc}") from None
    all_names = [n for n, _ in model.named_modules() if n]
    roots = set(names)
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise RecipeError(
                f"prune.protect_patterns: {pattern!r} is not a valid regular expression ({exc})"
            ) from None
        found = [n for n in all_names if compiled.search(n)]
        if not found:
            raise RecipeError(
                f"prune.protect_patterns: {pattern!r} matches no layer of the {who} "
                "(list them with: pocket inspect)"
            )
        roots.update(found)
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, PRUNABLE) and any(n == r or n.startswith(r + ".") for r in roots)
    ]


def _accumulate_taylor_gradients(
    model: nn.Module, spec, train_set, batches: int, seed: int
) -> None:
    """Loss gradients for Taylor importance, on the same plain (unaugmented) crops in the same
    order on every rank, so every rank removes the same channels."""
    loss_fn = softmax_cross_entropy if spec.heatmap_activation == "softmax" else heatmap_mse
    plain = train_set.without_augment() if hasattr(train_set, "without_augment") else train_set
    order = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(plain, batch_size=16, shuffle=True, generator=order)
    model.eval()  # batch statistics must not move while importance is estimated
    model.zero_grad()
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        loss_fn(model(batch["image"]), batch["heatmaps"], batch["weights"]).backward()


def prune(bundle: Bundle, config: PruneConfig, context: StageContext) -> tuple[Bundle, dict]:
    result = bundle.copy()
    model, spec = result.model, bundle.spec
    if result.quantization is not None:
        raise RecipeError("prune comes before quantize: the network is already quantized")
    unpruned = copy.deepcopy(bundle.model)  # the fine-tuning teacher
    example = torch.zeros(1, 3, *spec.input_size)
    macs_start = count_macs(model, spec)
    original = layer_shapes(model)

    if config.channel_ratio is not None:
        ratio, steps = config.channel_ratio, config.rounds
    else:
        ratio, steps = config.max_layer_ratio, _SEARCH_STEPS
    model.eval()
    pruner = tp.pruner.BasePruner(
        model,
        example,
        importance=_importance(config.importance),
        global_pruning=config.scope == "global",
        pruning_ratio=ratio,
        max_pruning_ratio=config.max_layer_ratio,
        iterative_steps=steps,
        ignored_layers=protected_layers(model, spec, config),
        round_to=config.round_to,
        # Our own forward call: without one, Torch-Pruning's tracing retries the forward
        # under a bare `except:`, which would swallow a Ctrl-C landing in it.
        forward_fn=lambda network, inputs: network(inputs),
    )

    order = execution_order(model, example) if config.reconstruct else []
    history: list[dict[str, Any]] = []
    for round_ in range(1, config.rounds + 1):
        refitter = _Refit(model, pruner, order) if config.reconstruct else None
        if config.channel_ratio is not None:
            _step(pruner, model, spec, context, config, refitter)
        else:
            goal = macs_start * (1 - config.macs_reduction * round_ / config.rounds)
            while count_macs(model, spec) > goal:
                if pruner.current_step >= _SEARCH_STEPS:
                    raise RecipeError(
                        f"prune.macs_reduction {config.macs_reduction}: reached only "
                        f"{1 - count_macs(model, spec) / macs_start:.1%} with max_layer_ratio "
                        f"{config.max_layer_ratio} and the protected layers; raise "
                        "max_layer_ratio or lower the target"
                    )
                _step(pruner, model, spec, context, config, refitter)
        macs = count_macs(model, spec)
        entry: dict[str, Any] = {"round": round_, "macs": macs, "macs_ratio": macs / macs_start}
        if refitter is not None:
            batches = calibration_batches(
                context.train_set, config.reconstruction_samples, context.seed
            )
            entry["refit_error"] = refitter.apply(model, batches)
            if config.rounds > 1 or config.finetune.steps:
                entry["ap_refit"] = measure(result, context.val_set, context.eval_batch_size).ap
        if config.finetune.steps:
            details = distill_model(
                model,
                unpruned,
                spec,
                context.train_set,
                config.finetune,
                seed=context.seed + round_,
                console=context.console,
                description=f"prune round {round_}/{config.rounds}: fine-tune",
            )
            entry["finetune_loss"] = details["final_loss"]
        if config.rounds > 1:
            entry["ap"] = measure(result, context.val_set, context.eval_batch_size).ap
        history.append(entry)
        context.console.print(
            f"prune round {round_}/{config.rounds}: {macs / 1e9:.3f} GMACs "
            f"({macs / macs_start:.0%} of the start)"
            + (f", {len(entry['refit_error'])} layers refitted" if "refit_error" in entry else "")
            + (f", AP {entry['ap_refit']:.4f} before fine-tuning" if "ap_refit" in entry else "")
            + (f", AP {entry['ap']:.4f}" if "ap" in entry else "")
        )
    for p in model.parameters():
        p.grad = None
    model.eval()
    result.layer_shapes = changed_shapes(model, _fresh(bundle))
    _check_rebuilds(result, bundle)
    pruned = {
        name: f"{_channels(original[name])} -> {_channels(shape)}"
        for name, shape in layer_shapes(model).items()
        if name in original and shape != original[name] and "out_channels" in shape
    }
    return result, {"rounds": history, "pruned_layers": pruned}


class _Refit:
    """One round's refit: the network as the round found it (the reference), and which of
    each dense layer's output channels (numbered as then) are still there."""

    def __init__(self, model: nn.Module, pruner: tp.pruner.BasePruner, order: list[str]) -> None:
        self.graph, self.order = pruner.DG, order
        self.reference = copy.deepcopy(model)
        self.names = {m: n for n, m in model.named_modules() if refittable(m)}
        self.widths = {n: in_features(m) for m, n in self.names.items()}
        self.channels = {
            n: list(range(m.out_features if isinstance(m, nn.Linear) else m.out_channels))
            for m, n in self.names.items()
        }

    def record(self, group) -> None:
        """Called with each group the pruner removes, before it removes it."""
        for dep, idxs in group.items:
            name = self.names.get(dep.target.module)
            if name is None or not self.graph.is_out_channel_pruning_fn(dep.handler):
                continue
            gone = {getattr(i, "idx", i) for i in idxs}  # Torch-Pruning's (idx, root_idx)
            self.channels[name] = [c for i, c in enumerate(self.channels[name]) if i not in gone]

    def apply(self, model: nn.Module, batches: list[torch.Tensor]) -> dict[str, dict]:
        """Refit the layers that lost input channels; each one's relative output error
        before and after (for report.json)."""
        shrunk = {n for m, n in self.names.items() if in_features(m) < self.widths[n]}
        names = [n for n in self.order if n in shrunk]
        errors = refit(model, self.reference, names, batches, self.channels)
        return {n: {"before": b, "after": a} for n, (b, a) in errors.items()}


def _step(
    pruner,
    model: nn.Module,
    spec,
    context: StageContext,
    config: PruneConfig,
    refitter: _Refit | None = None,
) -> None:
    if config.importance == "taylor":
        _accumulate_taylor_gradients(
            model, spec, context.train_set, config.taylor_batches, context.seed
        )
    for group in pruner.step(interactive=True):
        if refitter is not None:
            refitter.record(group)
        group.prune()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *spec.input_size))
    if out.shape[1] != spec.num_keypoints:
        raise ModelError(
            f"pruning changed the network's output to {out.shape[1]} channels "
            f"({spec.num_keypoints} joints expected): add its output layer to prune.protect"
        )


def _check_rebuilds(result: Bundle, original: Bundle) -> None:
    """A pruned checkpoint must load back: fail now, not when someone reloads it."""
    rebuilt = _fresh(original)
    try:
        apply_shapes(rebuilt, result.layer_shapes)
        load_state(rebuilt, result.model.state_dict(), "the pruned network")
    except ModelError as exc:
        raise ModelError(
            f"{exc}; pocket records the channel counts of convolution, linear, batch/group/"
            "layer norm and PReLU layers only"
        ) from None


def _fresh(bundle: Bundle) -> nn.Module:
    return Bundle.build(bundle.architecture, bundle.spec, **bundle.arguments).model


def _channels(shape: dict[str, int]) -> int:
    return shape["out_channels"]
