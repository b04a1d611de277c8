"""INT8 quantization through torchao's PT2E flow: export, prepare, calibrate (or train), convert.

Weights are per-channel symmetric int8 and activations per-tensor int8, annotated by
litert-torch's PT2E quantizer, the one whose decisions the TFLite converter consumes, so the
network measured here is the one the export targets receive. Layers can be kept in float by
name, type or regex; a per-layer sensitivity analysis quantizes one layer at a time; the
``auto_max_ap_drop`` mode keeps the fewest, most sensitive layers in float that meet an AP
budget; ``qat`` fine-tunes with fake quantization, distilled from the float network.

Layers are the quantizer's own units: each weighted operation (named by its module, for
example ``backbone.3.block.0.0``) with the activations fused to it or sharing its output
quantization, and each other quantized operation (``backbone.3:add``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    ObserverBase,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer import Quantizer, SharedQuantizationSpec
from torchao.quantization.pt2e.utils import _fuse_conv_bn_

from compress.errors import DataError, ModelError, RecipeError
from compress.models.bundle import Bundle, Quantization
from compress.pose.spec import PoseSpec
from compress.stages.base import StageContext, calibration_batches, measure, set_eval
from compress.stages.configs import FloatLayers, QuantizeConfig
from compress.stages.distill import distill_model

OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "histogram": HistogramObserver,
}
_ANNOTATION = "quantization_annotation"


# ----- the quantizer ---------------------------------------------------------------------------
def base_quantizer(observer: str, per_channel: bool, qat: bool) -> Quantizer:
    """litert-torch's PT2E quantizer with the chosen activation observer.

    For QAT, batch norm is folded into the convolutions before training (see ``_qat``), so
    the quantizer skips its conv+BN patterns: those fail to build under torch 2.13 (they hand
    torch.export a plain function).
    """
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )

    class FoldedBatchNormQuantizer(PT2EQuantizer):
        STATIC_QAT_ONLY_OPS: ClassVar[list[str]] = []

    class FullRangeOutputQuantizer(PT2EQuantizer):
        def annotate(self, model: GraphModule) -> GraphModule:
            super().annotate(model)
            full_range_outputs(model)
            return model

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat)
    if qat:
        return FoldedBatchNormQuantizer().set_global(config)
    act = dataclasses.replace(
        config.input_activation,
        observer_or_fake_quant_ctr=OBSERVERS[observer].with_args(eps=2**-12),
    )
    config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return FullRangeOutputQuantizer().set_global(config)


def full_range_outputs(model: GraphModule) -> None:
    """Calibrate the network's outputs with min-max, whatever observer the recipe chose.

    Histogram and moving-average observers clip a tensor's rarest, largest values to quantize
    the common ones more finely. In heatmaps those values are the peaks, the only values that
    decoding reads: with the histogram observer on the output, plain PTQ of the demo's pruned
    student lost 0.45 AP points over three calibration seeds, with min-max on the output only
    0.20 (``benchmarks/ptq_error_source.py``).
    """
    output = next(node for node in model.graph.nodes if node.op == "output")
    producers: list[Node] = []
    torch.fx.node.map_arg(output.args, producers.append)
    minmax = MinMaxObserver.with_args(eps=2**-12)
    for node in producers:
        if not _annotated(node):
            continue
        # Follow shared specs (a view or reshape at the end shares its input's quantization)
        # to the annotation that owns the spec: a node's output or one input edge of a node.
        owner, arg = node, None
        for _ in range(len(model.graph.nodes)):
            annotation = owner.meta.get(_ANNOTATION)
            if annotation is None:
                break
            spec = annotation.output_qspec if arg is None else annotation.input_qspec_map.get(arg)
            if not isinstance(spec, SharedQuantizationSpec):
                break
            target = spec.edge_or_node
            owner, arg = (target[1], target[0]) if isinstance(target, tuple) else (target, None)
        if annotation is None or spec is None:
            continue
        spec = dataclasses.replace(spec, observer_or_fake_quant_ctr=minmax)
        if arg is None:
            annotation.output_qspec = spec
        else:
            annotation.input_qspec_map[arg] = spec


def _annotated(node: Node) -> bool:
    return node.op == "call_function" and node.meta.get(_ANNOTATION) is not None


def _module_path(node: Node) -> tuple[str, str]:
    """(innermost module path, its type name) that produced ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, kind = list(stack.values())[-1]
    kind = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
    return path, kind.rsplit(".", 1)[-1]


def _shared_refs(node: Node) -> list[tuple[Node, bool]]:
    """Nodes whose quantization this node shares: (node, is_edge_user)."""
    ann = node.meta[_ANNOTATION]
    refs = []
    for spec in [*ann.input_qspec_map.values(), ann.output_qspec]:
        if isinstance(spec, SharedQuantizationSpec):
            target = spec.edge_or_node
            refs += [(target[1], True)] if isinstance(target, tuple) else [(target, False)]
    return refs


@dataclasses.dataclass(frozen=True)
class Unit:
    name: str
    module_types: tuple[str, ...]  # every module type on the path (for type matching)
    nodes: tuple[str, ...]  # graph node names


def quant_units(gm: GraphModule) -> dict[str, Unit]:
    """Group the annotated nodes of ``gm`` into named layers (see the module docstring)."""
    owner: dict[Node, str] = {}
    members: dict[str, list[Node]] = {}
    types: dict[str, tuple[str, ...]] = {}
    for node in gm.graph.nodes:
        if not _annotated(node):
            continue
        ann = node.meta[_ANNOTATION]
        shared = [ref for ref, _ in _shared_refs(node) if ref in owner]
        weighted = any(isinstance(n, Node) and n.op == "get_attr" for n in ann.input_qspec_map)
        # The tail of a fused pattern (conv -> relu) quantizes only its output.
        producer = node.args[0] if node.args and isinstance(node.args[0], Node) else None
        if not ann.input_qspec_map and producer in owner:
            shared = [producer]
        if shared and not weighted:  # an activation or view that shares its producer's qparams
            owner[node] = owner[shared[0]]
            members[owner[node]].append(node)
            continue
        path, _ = _module_path(node)
        op = str(node.target).split(".")[1] if "." in str(node.target) else node.name
        base = (path or node.name) if weighted else (f"{path}:{op}" if path else op)
        name, k = base, 1
        while name in members:  # several such operations in one module: number them
            k += 1
            name = f"{base}#{k}"
        stack = node.meta.get("nn_module_stack") or {}
        types[name] = tuple(
            (t if isinstance(t, str) else t.__qualname__).rsplit(".", 1)[-1]
            for _, t in stack.values()
        )
        owner[node] = name
        members[name] = [node]
    return {
        name: Unit(name, types[name], tuple(n.name for n in nodes))
        for name, nodes in members.items()
    }


class SelectiveQuantizer(Quantizer):
    """Runs a quantizer's annotation, then removes it from the layers left in float.

    ``keep(unit) -> bool`` decides per layer. Annotations that share quantization with a
    removed one are removed too, so the graph stays consistent.
    """

    def __init__(self, inner: Quantizer, keep: Callable[[Unit], bool]) -> None:
        super().__init__()
        self.inner, self.keep = inner, keep
        self.units: dict[str, Unit] = {}

    @property
    def global_config(self):
        """The wrapped quantizer's global config (litert-torch's converter reads it)."""
        return self.inner.global_config

    def transform_for_annotation(self, model: GraphModule) -> GraphModule:
        return self.inner.transform_for_annotation(model)

    def annotate(self, model: GraphModule) -> GraphModule:
        self.inner.annotate(model)
        self.units = units = quant_units(model)
        drop = {n for unit in units.values() if not self.keep(unit) for n in unit.nodes}
        nodes = {n.name: n for n in model.graph.nodes}
        stripped: set[Node] = set()
        for name in drop:
            nodes[name].meta.pop(_ANNOTATION, None)
            stripped.add(nodes[name])
        changed = True
        while changed:
            changed = False
            for node in model.graph.nodes:
                if _annotated(node) and any(ref in stripped for ref, _ in _shared_refs(node)):
                    node.meta.pop(_ANNOTATION)
                    stripped.add(node)
                    changed = True
        return model

    def validate(self, model: GraphModule) -> None:
        self.inner.validate(model)


# ----- layer selection -------------------------------------------------------------------------
def float_matcher(layers: FloatLayers, units: dict[str, Unit]) -> Callable[[Unit], bool]:
    """A predicate true for layers to keep in float; every rule must match some layer."""
    patterns = []
    for pattern in layers.patterns:
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise RecipeError(
                f"quantize.keep_float.patterns: {pattern!r} is not a valid regular "
                f"expression ({exc})"
            ) from None

    def by_name(unit: Unit, name: str) -> bool:
        base = unit.name.split(":", 1)[0].split("#", 1)[0]
        return base == name or base.startswith(name + ".") or unit.name == name

    def matches(unit: Unit) -> bool:
        return (
            any(by_name(unit, n) for n in layers.names)
            or any(t in unit.module_types for t in layers.types)
            or any(p.search(unit.name) for p in patterns)
        )

    all_types = sorted({t for u in units.values() for t in u.module_types})
    for name in layers.names:
        if not any(by_name(u, name) for u in units.values()):
            near = difflib.get_close_matches(name, list(units), n=3)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise RecipeError(f"quantize.keep_float.names: no quantized layer {name!r}{hint}")
    for kind in layers.types:
        if kind not in all_types:
            raise RecipeError(
                f"quantize.keep_float.types: no quantized layer of type {kind!r} "
                f"(types present: {', '.join(all_types)})"
            )
    for pattern, compiled in zip(layers.patterns, patterns, strict=True):
        if not any(compiled.search(u.name) for u in units.values()):
            raise RecipeError(
                f"quantize.keep_float.patterns: {pattern!r} matches no quantized layer"
            )
    return matches


# ----- the flow --------------------------------------------------------------------------------
def export_for_quantization(model: torch.nn.Module, spec: PoseSpec) -> GraphModule:
    """torch.export of an eval-mode copy with a dynamic batch size; strict, because residual
    additions get quantized only then."""
    model = copy.deepcopy(model).eval()
    example = (torch.zeros(2, 3, *spec.input_size),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, example, dynamic_shapes=({0: batch},), strict=True)
    return program.module()


def _calibrate(prepared: GraphModule, batches: Iterable[torch.Tensor]) -> None:
    """Run the observers over ``batches``; a batch the network turns into NaN/Inf stops it
    (the observers would record infinite ranges and every scale after them would be wrong)."""
    set_eval(prepared)
    with torch.no_grad():
        for n, images in enumerate(batches, 1):
            if not torch.isfinite(images).all():
                raise DataError(f"calibration batch {n} holds NaN or Inf input values")
            output = prepared(images)
            if not all(torch.isfinite(t).all() for t in _tensors(output)):
                raise ModelError(
                    f"calibration batch {n}: the float network's output holds NaN or Inf "
                    "values (it overflows on these images); fix the model before quantizing"
                )


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def ptq(
    exported: GraphModule,
    quantizer: Quantizer,
    batches: list[torch.Tensor],
    keep: Callable[[Unit], bool],
) -> GraphModule:
    """Post-training quantization of (a copy of) ``exported``; ``keep(unit)`` picks layers."""
    prepared = prepare_pt2e(copy.deepcopy(exported), SelectiveQuantizer(quantizer, keep))
    _calibrate(prepared, batches)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    return converted


def list_units(exported: GraphModule, quantizer: Quantizer) -> dict[str, Unit]:
    model = quantizer.transform_for_annotation(copy.deepcopy(exported))
    quantizer.annotate(model)
    return quant_units(model)


def output_error(model: torch.nn.Module, reference: torch.Tensor, images: torch.Tensor) -> float:
    """Relative L2 error of ``model``'s raw outputs against the float ones."""
    with torch.no_grad():
        out = model(images)
    return float((out - reference).norm() / reference.norm().clamp_min(1e-12))


class _FakeQuant(torch.nn.Module):
    """An observer's calibrated quantization, applied only while ``enabled``."""

    def __init__(self, observer: ObserverBase) -> None:
        super().__init__()
        scale, zero_point = observer.calculate_qparams()
        self.register_buffer("scale", scale.float())
        self.register_buffer("zero_point", zero_point.int())
        self.qmin, self.qmax = observer.quant_min, observer.quant_max
        per_channel = observer.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
        self.axis = observer.ch_axis if per_channel else None
        self.enabled = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.axis is None:
            return torch.fake_quantize_per_tensor_affine(
                x, self.scale, self.zero_point, self.qmin, self.qmax
            )
        return torch.fake_quantize_per_channel_affine(
            x, self.scale, self.zero_point, self.axis, self.qmin, self.qmax
        )


class LayerSwitches:
    """One calibration, then any set of layers quantized at will.

    Every observer of the fully annotated network is calibrated once and becomes a fake
    quantization that can be switched on per layer: a layer is then quantized exactly as the
    full INT8 network quantizes it (with every switch on, this is that network), and a
    sensitivity sweep costs one calibration instead of one per layer.
    """

    def __init__(
        self, exported: GraphModule, quantizer: Quantizer, batches: list[torch.Tensor]
    ) -> None:
        selective = SelectiveQuantizer(quantizer, lambda unit: True)
        self.model = prepare_pt2e(copy.deepcopy(exported), selective)
        _calibrate(self.model, batches)
        owner = {node: unit.name for unit in selective.units.values() for node in unit.nodes}
        # One switch per observer; PT2E registers a shared observer under several names.
        switches: dict[int, tuple[_FakeQuant, set[str]]] = {}
        for node in list(self.model.graph.nodes):
            if node.op != "call_module":
                continue
            observer = self.model.get_submodule(node.target)
            if not isinstance(observer, ObserverBase | _FakeQuant):
                continue
            if id(observer) not in switches and isinstance(observer, ObserverBase):
                switches[id(observer)] = (_FakeQuant(observer), set())
            switch, units = switches.get(id(observer)) or next(
                v for v in switches.values() if v[0] is observer
            )
            setattr(self.model, node.target, switch)
            near = [node.args[0], *node.users] if node.args else list(node.users)
            units |= {owner[n.name] for n in near if isinstance(n, Node) and n.name in owner}
        self.touches = list(switches.values())
        set_eval(self.model)

    def only(self, layers: set[str]) -> GraphModule:
        """The network with exactly ``layers`` quantized."""
        for switch, units in self.touches:
            switch.enabled = bool(units & layers)
        return self.model


def sensitivity(
    switches: LayerSwitches,
    units: dict[str, Unit],
    probe: torch.Tensor,
    reference: torch.Tensor,
    dataset,
    float_ap: float,
    console,
) -> list[dict[str, Any]]:
    """Quantize one layer at a time: AP drop (points) and output error for each, worst first."""
    rows = []
    for i, name in enumerate(units, 1):
        start = time.perf_counter()
        model = switches.only({name})
        ap = _ap(model, dataset)
        rows.append(
            {
                "layer": name,
                "ap": ap,
                "ap_drop": 100 * (float_ap - ap),
                "output_error": output_error(model, reference, probe),
            }
        )
        console.print(
            f"sensitivity {i}/{len(units)} {name}: AP drop {rows[-1]['ap_drop']:+.2f}  "
            f"output error {rows[-1]['output_error']:.4f}  ({time.perf_counter() - start:.1f} s)",
            soft_wrap=True,
        )
    return sorted(rows, key=lambda r: (-r["ap_drop"], -r["output_error"]))


_AUTO_CONFIRM_STEPS = 4  # converted networks checked after the search, at most


def _ap(model: torch.nn.Module, dataset) -> float:
    from compress.pose.metrics import evaluate

    with torch.no_grad():
        return evaluate(model, dataset, batch_size=64).ap


def quantize(bundle: Bundle, config: QuantizeConfig, context: StageContext) -> tuple[Bundle, dict]:
    if bundle.quantization is not None:
        raise RecipeError("the network is already quantized; quantize once, as the last stage")
    spec, console = bundle.spec, context.console
    float_model = copy.deepcopy(bundle.model).eval()
    exported = export_for_quantization(float_model, spec)
    quantizer = base_quantizer(config.observer, config.per_channel, qat=False)
    units = list_units(exported, quantizer)
    user_float = float_matcher(config.keep_float, units)
    batches = calibration_batches(context.train_set, config.calibration_samples, context.seed)
    found = sum(len(b) for b in batches)
    if found == 0:
        raise DataError("quantize: no calibration images (the train split has no people)")
    if found < config.calibration_samples:
        console.print(
            f"[yellow]warning:[/] quantize: {found} calibration images, fewer than "
            f"calibration_samples {config.calibration_samples} (the train split is that small)"
        )
    details: dict[str, Any] = {
        "observer": config.observer,
        "per_channel": config.per_channel,
        "calibration_samples": sum(len(b) for b in batches),
        "layers": len(units),
    }

    ranking: list[dict[str, Any]] = []
    auto_float: list[str] = []
    if config.sensitivity or config.auto_max_ap_drop is not None:
        switches = LayerSwitches(exported, quantizer, batches)
        probe = batches[0]
        with torch.no_grad():
            reference = float_model(probe)
        subset = context.val_set.first_images(config.sensitivity_people)
        float_ap = _ap(float_model, subset)
        ranking = sensitivity(switches, units, probe, reference, subset, float_ap, console)
        details["sensitivity"] = {"people": len(subset), "float_ap": float_ap, "layers": ranking}
        if config.auto_max_ap_drop is not None:
            auto_order = [r["layer"] for r in ranking if not user_float(units[r["layer"]])]
            val_float_ap = measure(bundle, context.val_set, context.eval_batch_size).ap
            auto_float, trials = _auto(
                switches,
                auto_order,
                {name for name, unit in units.items() if not user_float(unit)},
                context.val_set,
                val_float_ap,
                config.auto_max_ap_drop,
                console,
            )
            details["auto"] = {"max_ap_drop": config.auto_max_ap_drop, "trials": trials}

    def keep(unit: Unit) -> bool:
        return not user_float(unit) and unit.name not in auto_float

    float_units = sorted(u.name for u in units.values() if not keep(u))
    details["float_layers"] = float_units
    if config.qat is not None:
        converted, qat_details = _qat(bundle, float_model, spec, batches, keep, config, context)
        details["qat"] = qat_details
        quantizer = base_quantizer(config.observer, config.per_channel, qat=True)
    else:
        converted = ptq(exported, quantizer, batches, keep)
        if config.auto_max_ap_drop is not None:
            # The search scores calibrated fake quantization; the converted network rounds a
            # little differently, so confirm the budget on it, adding the next most sensitive
            # layer while it is exceeded (a few times at most).
            confirmed = details["auto"]["converted"] = []
            for attempt in range(_AUTO_CONFIRM_STEPS):
                drop = 100 * (val_float_ap - _ap(converted, context.val_set))
                confirmed.append({"float_layers": list(auto_float), "ap_drop": drop})
                console.print(
                    f"auto: converted with {len(auto_float)} layer(s) in float -> AP drop "
                    f"{drop:.2f} (budget {config.auto_max_ap_drop})"
                )
                last = attempt == _AUTO_CONFIRM_STEPS - 1
                if drop <= config.auto_max_ap_drop or len(auto_float) >= len(auto_order) or last:
                    if drop > config.auto_max_ap_drop:
                        console.print(
                            f"[yellow]warning:[/] quantize.auto_max_ap_drop "
                            f"{config.auto_max_ap_drop} not met on the converted network "
                            f"(AP drop {drop:.2f} with {len(auto_float)} layer(s) in float)"
                        )
                    break
                auto_float = auto_order[: len(auto_float) + 1]
                converted = ptq(exported, quantizer, batches, keep)
            float_units = sorted(u.name for u in units.values() if not keep(u))
            details["float_layers"] = float_units
    result = Bundle(
        converted,
        spec,
        bundle.architecture,
        dict(bundle.arguments),
        dict(bundle.provenance),
        Quantization(
            float_model,
            {**details, "quantizer": SelectiveQuantizer(quantizer, keep)},
            batches,
        ),
        dict(bundle.layer_shapes),
    )
    return result, details


def fewest_float_layers(
    order: list[str], budget: float, drop_of: Callable[[list[str]], float]
) -> list[str]:
    """The shortest prefix of ``order`` (most sensitive first) whose layers, kept in float,
    bring ``drop_of(float_layers)`` within ``budget``: sizes 0, 1, 2, 4, ... until it holds,
    then bisection between the last two."""
    if drop_of([]) <= budget:
        return []
    low, k = 0, 1
    while True:
        k = min(k, len(order))
        if drop_of(order[:k]) <= budget:
            high = k
            break
        if k == len(order):
            raise RecipeError(
                f"quantize.auto_max_ap_drop {budget}: even with every layer in float the AP "
                "drop exceeds it (is the budget below the evaluation's own noise?)"
            )
        low, k = k, 2 * k
    while high - low > 1:
        mid = (low + high) // 2
        if drop_of(order[:mid]) <= budget:
            high = mid
        else:
            low = mid
    return order[:high]


def _auto(
    switches: LayerSwitches,
    order: list[str],
    quantizable: set[str],
    dataset,
    float_ap: float,
    budget: float,
    console,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Keep the fewest most-sensitive layers in float that hold the AP drop within budget."""
    trials: list[dict[str, Any]] = []

    def drop_of(floating: list[str]) -> float:
        drop = 100 * (float_ap - _ap(switches.only(quantizable - set(floating)), dataset))
        trials.append({"float_layers": list(floating), "ap_drop": drop})
        console.print(
            f"auto: {len(floating)} layer(s) in float -> AP drop {drop:.2f} (budget {budget})"
        )
        return drop

    return fewest_float_layers(order, budget, drop_of), trials


def _qat(bundle, float_model, spec, batches, keep, config, context):
    """Quantization-aware training: fake-quantized fine-tuning, distilled from the float net."""
    qat_quantizer = SelectiveQuantizer(
        base_quantizer(config.observer, config.per_channel, qat=True), keep
    )
    exported = export_for_quantization(float_model, spec)
    # Fold batch norm into the convolutions (what prepare_pt2e does for PTQ; torchao keeps the
    # helper private): QAT then trains exactly the arithmetic the int8 file will run.
    _fuse_conv_bn_(exported)
    prepared = prepare_qat_pt2e(exported, qat_quantizer)
    _calibrate(prepared, batches)  # start the observers from calibrated ranges
    details = distill_model(
        prepared,
        float_model,
        spec,
        context.train_set,
        config.qat,
        seed=context.seed,
        console=context.console,
        description="quantization-aware training",
        train_mode=move_exported_model_to_train,
    )
    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    return converted, details
