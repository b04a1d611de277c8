"""Architectures, checkpoints, user models and inspection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compress.errors import ModelError
from compress.models import Bundle, architecture_names, build_architecture, load_bundle, save_bundle
from compress.models.inspect import summarize
from compress.models.registry import register_architecture
from compress.models.zoo import resolve_model
from compress.pose.spec import PoseSpec, coco17

SPEC = coco17(64, 64)


@pytest.mark.parametrize("name", ["mobilepose", "respose"])
@pytest.mark.parametrize("head", ["upsample", "deconv"])
@pytest.mark.parametrize("skips", [True, False])
def test_builtin_architectures_give_stride_4_heatmaps(name: str, head: str, skips: bool) -> None:
    model = build_architecture(name, coco17(96, 64), head=head, skips=skips).eval()
    assert len(model.head.laterals) == (3 if skips else 0)
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 96, 64))
    assert out.shape == (2, 17, 24, 16)


@pytest.mark.parametrize("name", ["mobilepose", "respose"])
def test_skip_connections_carry_fine_detail_to_the_heatmaps(name: str) -> None:
    # The skip path feeds the output: silencing the lateral projections changes the heatmaps.
    torch.manual_seed(0)
    model = build_architecture(name, SPEC).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        for lateral in model.head.laterals:
            torch.nn.init.zeros_(lateral[0].weight)
        without = model(x)
    assert not torch.allclose(full, without)


def test_registry_names_and_errors() -> None:
    assert {"mobilepose", "respose"} <= set(architecture_names())
    with pytest.raises(
        ModelError, match="unknown architecture 'mobilpose'; did you mean 'mobilepose'"
    ):
        build_architecture("mobilpose", SPEC)
    with pytest.raises(ModelError, match="registered twice"):
        register_architecture("mobilepose")(lambda spec: torch.nn.Identity())
    with pytest.raises(ModelError, match="needs input height and width divisible by 32, got 60x64"):
        build_architecture("mobilepose", coco17(60, 64))
    with pytest.raises(ModelError, match="bad arguments"):
        build_architecture("mobilepose", SPEC, depth=3)


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    bundle = Bundle.build("mobilepose", SPEC, width=0.5)
    bundle.model.eval()
    bundle.provenance = {"note": "test"}
    weights, config = save_bundle(bundle, tmp_path / "ckpt")
    assert weights.name == "ckpt.safetensors" and config.name == "ckpt.json"
    assert json.loads(config.read_text())["arguments"] == {"width": 0.5}
    again = load_bundle(tmp_path / "ckpt.json")
    again.model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(bundle.model(x), again.model(x))
    assert again.spec == SPEC and again.provenance == {"note": "test"}


def test_fp16_storage_halves_the_file(tmp_path: Path) -> None:
    bundle = Bundle.build("mobilepose", SPEC)
    w32, _ = save_bundle(bundle, tmp_path / "a")
    w16, _ = save_bundle(bundle, tmp_path / "b", dtype=torch.float16)
    assert w16.stat().st_size < 0.55 * w32.stat().st_size
    loaded = load_bundle(tmp_path / "b")
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_loading_into_the_wrong_architecture_names_the_mismatch(tmp_path: Path) -> None:
    save_bundle(Bundle.build("mobilepose", SPEC, width=0.5), tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt.json").read_text())
    config["arguments"] = {"width": 1.0}
    (tmp_path / "ckpt.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelError,
        match=r"shape mismatch \d+ \(first: backbone\.0\.0\.weight: "
        r"checkpoint \(16, 3, 3, 3\) vs model \(32, 3, 3, 3\)",
    ):
        load_bundle(tmp_path / "ckpt")
    config["architecture"] = "respose"
    config["arguments"] = {}
    (tmp_path / "ckpt.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"missing \d+ \(first: stem\.0\.weight"):
        load_bundle(tmp_path / "ckpt")


def test_corrupt_or_missing_checkpoints(tmp_path: Path) -> None:
    save_bundle(Bundle.build("mobilepose", SPEC, width=0.5), tmp_path / "ckpt")
    weights = tmp_path / "ckpt.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        load_bundle(tmp_path / "ckpt")
    with pytest.raises(ModelError, match="checkpoint config not found"):
        load_bundle(tmp_path / "nothing")


def test_checkpoints_with_nan_or_the_wrong_dtype_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_bundle(Bundle.build("mobilepose", SPEC, width=0.5), tmp_path / "ckpt")
    weights = tmp_path / "ckpt.safetensors"
    good = load_file(str(weights))
    bad = dict(good)
    bad["backbone.0.0.weight"] = good["backbone.0.0.weight"].clone()
    bad["backbone.0.0.weight"][0, 0, 0, 0] = float("nan")
    save_file(bad, str(weights))
    with pytest.raises(
        ModelError, match=r"ckpt\.safetensors: tensor backbone\.0\.0\.weight holds NaN"
    ):
        load_bundle(tmp_path / "ckpt")
    bad["backbone.0.0.weight"] = good["backbone.0.0.weight"].to(torch.int32)
    save_file(bad, str(weights))
    with pytest.raises(
        ModelError,
        match=r"tensor backbone\.0\.0\.weight is int32, the architecture expects float32",
    ):
        load_bundle(tmp_path / "ckpt")


def test_user_model_from_module_builder(tmp_path: Path) -> None:
    spec = PoseSpec(
        name="five-points",
        keypoints=("a", "b", "c", "d", "e"),
        flip_pairs=(("b", "c"),),
        skeleton=(("a", "b"), ("a", "c"), ("d", "e")),
        oks_sigmas=(0.05,) * 5,
        input_height=48,
        input_width=40,
    )
    bundle = Bundle.build("tests.user_models:tiny_pose", spec, channels=4)
    assert bundle.model(torch.zeros(1, 3, 48, 40)).shape == (1, 5, 12, 10)
    save_bundle(bundle, tmp_path / "user")
    again = resolve_model(str(tmp_path / "user.json"))
    assert again.spec.num_keypoints == 5 and again.architecture == "tests.user_models:tiny_pose"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.user_models:raises", "the builder raised RuntimeError: the user's builder failed"),
        ("tests.user_models:not_a_module", "returned str, not an nn.Module"),
        ("tests.user_models:missing", "has no callable 'missing'"),
        ("no_such_package.models:build", "cannot import module 'no_such_package.models'"),
    ],
)
def test_user_builders_that_fail_are_named(target: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_architecture(target, SPEC)


def test_summary_counts_params_macs_and_shapes() -> None:
    model = build_architecture("tests.user_models:tiny_pose", SPEC, channels=8)
    summary = summarize(model, SPEC)
    # conv1: 32x32 outputs x 8 x (3*3*3) ; conv2: 16x16 x 8 x (8*3*3) ; conv3: 16x16 x 17 x 8
    assert summary.macs == 32 * 32 * 8 * 27 + 16 * 16 * 8 * 72 + 16 * 16 * 17 * 8
    assert summary.params == sum(p.numel() for p in model.parameters())
    assert summary.output_shape == (1, 17, 16, 16)
    names = [layer.name for layer in summary.layers]
    assert names[0] == "body.0" and summary.layers[0].output_shape == (1, 8, 32, 32)
    assert summary.layers[0].macs == 32 * 32 * 8 * 27


class _Evil:
    """A pickle that runs code when loaded the unsafe way."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_are_refused_unless_imported_with_weights_only(tmp_path: Path) -> None:
    import pickle

    from typer.testing import CliRunner

    from compress.cli import app

    runner = CliRunner()
    # Loading a pickle directly is refused with the way to convert it.
    torch.save(build_architecture("tests.user_models:tiny_pose", SPEC).state_dict(),
               tmp_path / "plain.pt")  # fmt: skip
    refused = runner.invoke(app, ["inspect", str(tmp_path / "plain.pt")])
    assert refused.exit_code == 2 and "pocket never unpickles by default" in refused.output
    # An explicit import reads tensors only, and the result loads like any checkpoint.
    args = ["checkpoint", str(tmp_path / "plain.pt"), str(tmp_path / "imported"),
            "--from-pickle", "--architecture", "tests.user_models:tiny_pose",
            "--input-size", "64x64"]  # fmt: skip
    imported = runner.invoke(app, args)
    assert imported.exit_code == 0, imported.output
    assert load_bundle(tmp_path / "imported").architecture == "tests.user_models:tiny_pose"
    # A malicious pickle is refused and its code never runs.
    marker = tmp_path / "pwned"
    with (tmp_path / "evil.pt").open("wb") as handle:
        pickle.dump({"weight": _Evil(marker)}, handle)
    args[1] = str(tmp_path / "evil.pt")
    evil = runner.invoke(app, args)
    assert evil.exit_code == 2 and "refused: not a plain weights pickle" in evil.output
    assert not marker.exists()


def test_a_user_network_with_the_wrong_output_shape_is_named() -> None:
    with pytest.raises(
        ModelError,
        match=r"architecture 'tests.user_models:wrong_shape': output \(1, 8, 16, 16\) for a "
        r"1x3x64x64 input; the pose spec needs \(1, 17, 16, 16\)",
    ):
        build_architecture("tests.user_models:wrong_shape", SPEC)
