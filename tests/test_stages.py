"""Compression stages on tiny real networks: distillation, structured pruning, INT8 PT2E."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from rich.console import Console

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.errors import RecipeError
from compress.models import Bundle, load_bundle, save_bundle
from compress.models.inspect import count_macs
from compress.pose.spec import coco17
from compress.stages.base import StageContext, run_stage
from compress.stages.configs import DistillConfig, FloatLayers, PruneConfig, QuantizeConfig
from compress.stages.distill import distill
from compress.stages.prune import prune
from compress.stages.quantize import (
    LayerSwitches,
    base_quantizer,
    calibration_batches,
    export_for_quantization,
    fewest_float_layers,
    float_matcher,
    list_units,
    ptq,
    quantize,
)

SPEC = coco17(64, 64)
FAST = {"batch_size": 8, "workers": 0}


@pytest.fixture(scope="module")
def context(synthetic_root: Path, tmp_path_factory) -> StageContext:
    train = CocoPoseDataset.from_folder(synthetic_root, "train", SPEC, augment=AugmentConfig())
    val = CocoPoseDataset.from_folder(synthetic_root, "val", SPEC).first_images(40)
    torch.manual_seed(0)
    teacher = Bundle.build("respose", SPEC, widths=[16, 16, 24, 32], head_channels=16)
    return StageContext(
        train, val, tmp_path_factory.mktemp("run"), teacher=teacher, console=Console(quiet=True)
    )


def student() -> Bundle:
    torch.manual_seed(1)
    return Bundle.build("mobilepose", SPEC, width=0.25, head_channels=16)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_distillation_trains_a_copy_and_reports_before_and_after(context) -> None:
    bundle = student()
    before = copy.deepcopy(bundle.model)
    config = DistillConfig(
        steps=3, features=[{"student": "backbone.6", "teacher": "stages.1"}], **FAST
    )
    result, report, _ = run_stage("distill", distill, bundle, config, context)
    assert same_weights(bundle.model, before)  # the input is never changed
    assert not same_weights(result.model, before)
    assert report.details["steps"] == 3
    assert set(report.metrics_before) == set(report.metrics_after) >= {"ap", "pck", "pdj", "pcp"}
    assert report.macs_before == report.macs_after > 0


def test_distillation_names_a_missing_feature_layer(context) -> None:
    config = DistillConfig(steps=1, features=[{"student": "backbone.66", "teacher": "stages.1"}])
    with pytest.raises(
        RecipeError,
        match=r"distill.features: the student has no layer "
        r"'backbone.66'; did you mean 'backbone.6'",
    ):
        distill(student(), config, context)


def test_distillation_refuses_a_teacher_with_another_input_size(context) -> None:
    other = copy.copy(context)
    other.teacher = Bundle.build("respose", coco17(96, 64), widths=[8, 8, 8, 8])
    with pytest.raises(RecipeError, match=r"differs from the student's in input_size"):
        distill(student(), DistillConfig(steps=1), other)


def test_pruning_shrinks_convolutions_to_the_macs_target_and_saves(context, tmp_path) -> None:
    bundle = student()
    original = copy.deepcopy(bundle.model)
    macs_before = count_macs(bundle.model, SPEC)
    config = PruneConfig(macs_reduction=0.4, rounds=2, finetune={"steps": 1, **FAST})
    result, details = prune(bundle, config, context)
    assert count_macs(result.model, SPEC) <= 0.6 * macs_before
    assert same_weights(bundle.model, original)  # the input is never changed
    assert [r["round"] for r in details["rounds"]] == [1, 2]
    assert details["pruned_layers"]  # channels really went
    x = torch.randn(2, 3, 64, 64)
    result.model.eval()
    with torch.no_grad():
        out = result.model(x)
    assert out.shape == (2, 17, 16, 16)
    # A pruned checkpoint records its layer shapes and reloads exactly.
    save_bundle(result, tmp_path / "pruned")
    reloaded = load_bundle(tmp_path / "pruned").model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x), out)


def test_stage_cache_keys_on_the_work_and_round_trips_a_pruned_network(context, tmp_path) -> None:
    from compress.stages.base import StageReport
    from compress.stages.cache import StageCache

    cache = StageCache(tmp_path / "stages")
    bundle, config = student(), PruneConfig(channel_ratio=0.3, finetune={"steps": 0})
    data = {"section": {"synthetic": 1}}
    key = cache.key(config, bundle, data, 0, None)
    assert key == cache.key(config, student(), data, 0, None)  # same work, same key
    other = student()
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)
    changed = [
        cache.key(config, other, data, 0, None),
        cache.key(PruneConfig(channel_ratio=0.4, finetune={"steps": 0}), bundle, data, 0, None),
        cache.key(config, bundle, {"section": {"synthetic": 2}}, 0, None),
        cache.key(config, bundle, data, 1, None),
        cache.key(config, bundle, data, 0, context.teacher),
    ]
    assert len({key, *changed}) == 6
    assert cache.load(key, SPEC) is None
    pruned, _ = prune(bundle, config, context)
    report = StageReport("prune", 1.0, 10, 5, 100, 50, {"ap": 0.5}, {"ap": 0.4}, {"x": [1]})
    cache.store(key, pruned, report)
    loaded, loaded_report = cache.load(key, SPEC)
    assert same_weights(loaded.model, pruned.model) and loaded_report == report
    assert [p.name for p in (tmp_path / "stages").iterdir()] == [key]  # no partial left
    (tmp_path / "stages" / key / "model.safetensors").write_bytes(b"broken")
    assert cache.load(key, SPEC) is None  # a damaged entry is recomputed, never trusted


def test_pruning_keeps_protected_layers(context) -> None:
    bundle = student()
    config = PruneConfig(channel_ratio=0.5, protect=["head"], finetune={"steps": 0})
    result, _ = prune(bundle, config, context)
    for (name, a), (_, b) in zip(
        bundle.model.named_modules(), result.model.named_modules(), strict=True
    ):
        if name.startswith("head") and isinstance(a, torch.nn.Conv2d):
            # A protected layer keeps its own (output) channels; its inputs follow the backbone.
            assert a.out_channels == b.out_channels, name
    assert count_macs(result.model, SPEC) < count_macs(bundle.model, SPEC)


@pytest.mark.parametrize("architecture", ["mobilepose", "tests.user_models:head_first"])
def test_pruning_never_removes_heatmap_channels(context, architecture: str) -> None:
    # The heatmap layer is found by running the network, not by its place in the module list.
    arguments = {"width": 0.25, "head_channels": 16} if architecture == "mobilepose" else {}
    bundle = Bundle.build(architecture, SPEC, **arguments)
    config = PruneConfig(channel_ratio=0.5, scope="global", finetune={"steps": 0})
    result, _ = prune(bundle, config, context)
    assert count_macs(result.model, SPEC) < count_macs(bundle.model, SPEC)
    with torch.no_grad():
        assert result.model(torch.zeros(1, 3, 64, 64)).shape == (1, 17, 16, 16)


def test_protect_patterns_keep_every_matching_layer(context) -> None:
    # Every block's output (the channels the residual additions carry) kept whole: only
    # the expanded channels inside the blocks are pruned.
    bundle = student()
    config = PruneConfig(
        channel_ratio=0.5,
        protect_patterns=[
            r"^backbone\.0$",
            r"^backbone\.1\.block\.1$",
            r"^backbone\.\d+\.block\.2$",
        ],
        finetune={"steps": 0},
    )
    result, _ = prune(bundle, config, context)
    before, after = dict(bundle.model.named_modules()), dict(result.model.named_modules())
    kept = [
        n
        for n in before
        if n.endswith("block.2.0") or n in ("backbone.0.0", "backbone.1.block.1.0")
    ]
    assert kept and all(before[n].out_channels == after[n].out_channels for n in kept)
    inner = [n for n in before if n.endswith("block.0.0") and n != "backbone.1.block.0.0"]
    assert any(after[n].out_channels < before[n].out_channels for n in inner)


def test_ctrl_c_while_the_pruner_traces_the_network_is_not_swallowed(context, monkeypatch) -> None:
    import inspect

    bundle = student()
    forward = type(bundle.model).forward

    pressed = []

    def interrupted(self, x):
        if not pressed and any(f.function == "build_dependency" for f in inspect.stack()):
            pressed.append(True)
            raise KeyboardInterrupt  # one Ctrl-C, while Torch-Pruning traces the network
        return forward(self, x)

    monkeypatch.setattr(type(bundle.model), "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prune(bundle, PruneConfig(channel_ratio=0.5, finetune={"steps": 0}), context)


def test_refit_recovers_a_layer_exactly_when_the_removed_channels_were_redundant() -> None:
    from compress.stages.reconstruct import refit

    torch.manual_seed(0)
    first = torch.nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():  # channels 4-7 repeat channels 0-3
        first.weight[4:] = first.weight[:4]
        first.bias[4:] = first.bias[:4]
    reference = torch.nn.Sequential(first, torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 3, padding=1))
    pruned = copy.deepcopy(reference)
    pruned[0] = torch.nn.Conv2d(3, 4, 3, padding=1)
    pruned[2] = torch.nn.Conv2d(4, 3, 3, padding=1)  # and outputs 1, 3, 4 go too
    with torch.no_grad():
        pruned[0].weight.copy_(first.weight[:4])
        pruned[0].bias.copy_(first.bias[:4])
        pruned[2].weight.copy_(reference[2].weight[[0, 2, 5], :4])
        pruned[2].bias.copy_(reference[2].bias[[0, 2, 5]])
    images = [torch.randn(4, 3, 12, 12) for _ in range(2)]
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        wanted = reference(x)[:, [0, 2, 5]]
        before = float((pruned(x) - wanted).abs().max())
    errors = refit(pruned, reference, ["2"], images, {"2": [0, 2, 5]}, ridge=1e-9)
    with torch.no_grad():
        after = float((pruned(x) - wanted).abs().max())
    assert before > 0.1 and after < 1e-4 and errors["2"][1] < 1e-9
    # The refitted weights are the two copies' weights summed, as they must be.
    expected = reference[2].weight[[0, 2, 5], :4] + reference[2].weight[[0, 2, 5], 4:]
    assert torch.allclose(pruned[2].weight, expected, atol=1e-4)


def test_refit_leaves_out_layers_a_forward_pass_calls_twice() -> None:
    from compress.stages.reconstruct import execution_order

    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.shared = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.shared(self.shared(self.stem(x)))

    assert execution_order(Shared(), torch.zeros(1, 3, 4, 4)) == ["stem"]


def test_pruning_refits_every_dense_layer_that_lost_inputs(context) -> None:
    bundle = student()
    config = PruneConfig(
        macs_reduction=0.3, reconstruct=True, reconstruction_samples=32, finetune={"steps": 0}
    )
    result, details = prune(bundle, config, context)
    before, after = dict(bundle.model.named_modules()), dict(result.model.named_modules())
    shrunk = {
        n
        for n, m in after.items()
        if isinstance(m, torch.nn.Conv2d) and m.groups == 1
        and m.in_channels < before[n].in_channels
    }  # fmt: skip
    refits = details["rounds"][0]["refit_error"]
    assert shrunk and set(refits) == shrunk and "head.final" in refits
    # Each fit brings its layer's output closer to what it was before pruning; on this
    # random network most layers' error falls by more than half (three quarters, median).
    ratios = sorted(e["after"] / e["before"] for e in refits.values())
    assert ratios[-1] < 1 and ratios[len(ratios) // 2] < 0.5


def test_pruning_names_an_unknown_protected_layer(context) -> None:
    config = PruneConfig(channel_ratio=0.5, protect=["haed"], finetune={"steps": 0})
    with pytest.raises(RecipeError, match=r"prune.protect: the network has no layer 'haed'"):
        prune(student(), config, context)


@pytest.fixture(scope="module")
def quantized(context):
    bundle = student()
    config = QuantizeConfig(calibration_samples=16, keep_float={"names": ["head.final"]})
    return bundle, *quantize(bundle, config, context)


def test_ptq_gives_an_int8_graph_close_to_the_float_network(quantized) -> None:
    bundle, result, details = quantized
    graph = str(result.model.graph)
    assert "quantize_per_channel" in graph and "quantize_per_tensor" in graph
    assert details["float_layers"] == ["head.final"]
    assert details["layers"] > 20
    x = torch.randn(4, 3, 64, 64)
    bundle.model.eval()
    with torch.no_grad():
        ref, out = bundle.model(x), result.model(x)
    error = float((out - ref).norm() / ref.norm())
    assert error < 0.2, f"relative output error {error:.4f}"
    assert result.quantization is not None and result.quantization.float_model is not None
    assert bundle.quantization is None  # the input stays float


def heatmap_logits(images: int, maps: int = 4, size: int = 24) -> torch.Tensor:
    """A low background with one Gaussian peak per map, of random height and place."""
    x = torch.randn(images, maps, size, size) * 1.5 - 4
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(images):
        for j in range(maps):
            cy, cx = torch.randint(0, size, (2,))
            height = 4 + 8 * torch.rand(())
            x[i, j] += height * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return x


def test_the_output_keeps_its_full_range_whatever_the_observer() -> None:
    # On heatmap-like values a histogram observer clips the highest peaks to quantize the
    # background finely; on the network's output the peaks are the signal, so the output is
    # calibrated with min-max while the layers inside keep the recipe's observer.
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.Conv2d(4, 4, 1)).eval()
    with torch.no_grad():  # both layers pass their input through unchanged
        for conv in model:
            conv.weight.copy_(torch.eye(4)[:, :, None, None])
            conv.bias.zero_()
    torch.manual_seed(0)
    batches = [heatmap_logits(8) for _ in range(4)]
    exported = torch.export.export(model, (batches[0],), strict=True).module()
    quantized = ptq(exported, base_quantizer("histogram", True, False), batches, lambda _: True)

    def top_of_range(node) -> float:
        while "dequantize" not in str(node.target):
            node = node.args[0]
        scale, zero_point, _, q_max = node.args[1:5]
        return scale * (q_max - zero_point)

    convs = [n for n in quantized.graph.nodes if "conv" in str(n.target)]
    output = next(n for n in quantized.graph.nodes if n.op == "output").args[0][0]
    peak = max(float(b.max()) for b in batches)
    assert top_of_range(output) >= 0.98 * peak
    assert top_of_range(convs[1].args[0]) < 0.9 * peak  # inside, the histogram clips


def test_keep_float_rules_must_match_a_layer() -> None:
    exported = export_for_quantization(student().model, SPEC)
    units = list_units(exported, base_quantizer("histogram", per_channel=True, qat=False))
    assert {"head.final", "backbone.0.0", "head:add", "head:add#2"} <= set(units)
    keep = float_matcher(FloatLayers(names=["head"], types=["InvertedResidual"]), units)
    assert keep(units["head.final"]) and keep(units["backbone.1:add"])
    assert not keep(units["backbone.0.0"])
    for rules, message in [
        ({"names": ["head.fnal"]}, r"no quantized layer 'head.fnal'; did you mean 'head.final'"),
        ({"types": ["Conv3d"]}, r"no quantized layer of type 'Conv3d' \(types present: "),
        ({"patterns": ["^nothing$"]}, r"'\^nothing\$' matches no quantized layer"),
        ({"patterns": ["("]}, r"'\(' is not a valid regular expression"),
    ]:
        with pytest.raises(RecipeError, match=message):
            float_matcher(FloatLayers(**rules), units)


def test_qat_fine_tunes_fake_quantized_and_converts(context) -> None:
    config = QuantizeConfig(calibration_samples=8, qat={"steps": 2, **FAST})
    result, details = quantize(student(), config, context)
    assert details["qat"]["steps"] == 2
    assert "quantize_per_channel" in str(result.model.graph)
    with torch.no_grad():
        assert result.model(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)


def test_sensitivity_lists_every_layer_on_a_small_network(context) -> None:
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    config = QuantizeConfig(calibration_samples=8, sensitivity=True, sensitivity_people=10)
    _, details = quantize(bundle, config, context)
    rows = details["sensitivity"]["layers"]
    assert {r["layer"] for r in rows} == {"body.0", "body.3", "body.5"}
    assert all(r["output_error"] >= 0 for r in rows)


def test_auto_confirms_its_choice_on_the_converted_network(context) -> None:
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    config = QuantizeConfig(calibration_samples=8, sensitivity_people=10, auto_max_ap_drop=0.01)
    result, details = quantize(bundle, config, context)
    confirmed = details["auto"]["converted"]
    assert 1 <= len(confirmed) <= 4
    assert confirmed[-1]["float_layers"] == details["float_layers"]
    assert result.quantization.settings["float_layers"] == details["float_layers"]


def test_layer_switches_measure_what_post_training_quantization_gives(context) -> None:
    # The fast path (one calibration, fake quantization switched per layer) quantizes a layer
    # as the full INT8 network does; with every layer on it is that network.
    model = student().model
    exported = export_for_quantization(model, SPEC)
    quantizer = base_quantizer("minmax", per_channel=True, qat=False)
    batches = calibration_batches(context.train_set, 16, seed=0)
    switches = LayerSwitches(exported, quantizer, batches)
    units = list_units(exported, quantizer)
    x = batches[0][:4]
    full = ptq(exported, quantizer, batches, lambda unit: True)
    with torch.no_grad():
        assert torch.allclose(switches.only(set(units))(x), full(x), rtol=1e-4, atol=1e-5)
        # All off: the float network (batch norm folded, so equal up to rounding).
        assert torch.allclose(switches.only(set())(x), exported(x), rtol=1e-4, atol=1e-5)
    # One layer alone: within 1 % of a separate PTQ of just that layer (which may place its
    # input observer after an activation rather than before it, as the full network does).
    for layers in ({"backbone.2.block.1.0"}, {"head.final", "backbone.1:add"}):
        separate = ptq(exported, quantizer, batches, lambda unit, s=layers: unit.name in s)
        with torch.no_grad():
            expected, got = separate(x), switches.only(layers)(x)
        assert float((got - expected).norm() / expected.norm()) < 0.01


def test_auto_search_finds_the_fewest_float_layers() -> None:
    effect = {"a": 2.0, "b": 1.0, "c": 0.3, "d": 0.1, "e": 0.05}
    calls = []

    def drop_of(floating: list[str]) -> float:
        calls.append(len(floating))
        return sum(v for k, v in effect.items() if k not in floating)

    assert fewest_float_layers(list(effect), 0.5, drop_of) == ["a", "b"]
    assert fewest_float_layers(list(effect), 0.2, drop_of) == ["a", "b", "c"]
    assert fewest_float_layers(list(effect), 5.0, drop_of) == []
    with pytest.raises(RecipeError, match="even with every layer in float"):
        fewest_float_layers(list(effect), 0.01, lambda floating: 1.0)


def test_calibration_set_empty_is_an_error_and_small_a_warning(context) -> None:
    from compress.errors import DataError

    empty = copy.copy(context)
    empty.train_set = copy.copy(context.train_set)
    empty.train_set.samples = []
    with pytest.raises(DataError, match="no calibration images"):
        quantize(student(), QuantizeConfig(calibration_samples=8), empty)
    loud = copy.copy(context)
    loud.console = Console(record=True, width=200)
    quantize(student(), QuantizeConfig(calibration_samples=10_000), loud)
    assert f"{len(context.train_set)} calibration images, fewer than calibration_samples" in (
        loud.console.export_text()
    )


def test_nan_inputs_stop_distillation_and_calibration_with_the_place_named(
    context, poisoned
) -> None:
    from compress.errors import DataError

    bad = copy.copy(context)
    bad.train_set = poisoned(context.train_set, 2)
    bad_id = int(context.train_set[2]["image_id"])
    config = DistillConfig(steps=1, batch_size=len(context.train_set), workers=0)
    with pytest.raises(DataError, match=rf"at distill step 1 \(images \[{bad_id}\]\)"):
        distill(student(), config, bad)
    with pytest.raises(DataError, match=rf"calibration image {bad_id} \(sample 2\) holds NaN"):
        quantize(student(), QuantizeConfig(calibration_samples=10_000), bad)


def test_a_network_that_overflows_on_calibration_data_is_named(context) -> None:
    from compress.errors import ModelError

    bundle = student()
    head = [m for m in bundle.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.fill_(3e38)
        head.bias.fill_(3.4e38)  # near float32 max: any positive input overflows
    with pytest.raises(ModelError, match=r"calibration batch 1: the float network's output"):
        quantize(bundle, QuantizeConfig(calibration_samples=8), context)
