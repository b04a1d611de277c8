"""Exporters on a tiny real network, run in their real runtimes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.errors import RecipeError, UnsupportedOperationError
from compress.export import ExportContext, ExportOptions, exporter, parse_targets
from compress.export import onnx as onnx_export
from compress.export import tflite as tflite_export
from compress.export.metadata import METADATA_KEY, pose_metadata
from compress.models import Bundle
from compress.pose.spec import coco17
from compress.runtimes.litert import LiteRTRunner
from compress.runtimes.onnxruntime import OnnxRunner
from compress.stages.base import StageContext
from compress.stages.configs import QuantizeConfig
from compress.stages.quantize import calibration_batches, quantize

SPEC = coco17(64, 64, heatmap_activation="softmax")


@pytest.fixture(scope="module")
def setup(synthetic_root: Path, tmp_path_factory):
    train = CocoPoseDataset.from_folder(synthetic_root, "train", SPEC, augment=AugmentConfig())
    val = CocoPoseDataset.from_folder(synthetic_root, "val", SPEC)
    torch.manual_seed(0)
    bundle = Bundle.build("mobilepose", SPEC, width=0.25, head_channels=16)
    context = StageContext(train, val, tmp_path_factory.mktemp("run"), console=Console(quiet=True))
    quantized, _ = quantize(bundle, QuantizeConfig(calibration_samples=16), context)
    calibration = calibration_batches(train, 16, seed=0)
    images = calibration[0][:2]
    with torch.no_grad():
        reference = bundle.model.eval()(images)
    return bundle, quantized, calibration, images, reference, tmp_path_factory.mktemp("out")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_targets_are_checked_by_name() -> None:
    assert [str(t) for t in parse_targets(["tflite:int8", "onnx:fp32"])] == [
        "tflite:int8",
        "onnx:fp32",
    ]
    with pytest.raises(RecipeError, match=r"unknown export format 'tflight'; did you mean "
                       r"'tflite'\? \(known: "):  # fmt: skip
        parse_targets(["tflight:fp32"])
    variants = "tflite:fp32, tflite:fp16, tflite:dynamic_int8, tflite:int8"
    with pytest.raises(
        RecipeError, match=rf"tflite variants are {variants}; did you mean 'tflite:int8'\?"
    ):
        parse_targets(["tflite:int9"])
    with pytest.raises(RecipeError, match="listed twice"):
        parse_targets(["onnx:fp32", "onnx:fp32"])


class _Upsamplings(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.conv(x))
        z = torch.nn.functional.interpolate(y, scale_factor=2.0)  # a user's own call
        return z + torch.nn.functional.interpolate(self.conv(x), scale_factor=4.0)


def test_nearest_upsampling_becomes_concatenations_with_the_same_numbers() -> None:
    model, x = _Upsamplings().eval(), torch.randn(2, 3, 6, 5)
    rewritten = tflite_export.concat_upsampling(model, x)
    targets = [str(n.target) for n in rewritten.graph.nodes if n.op == "call_function"]
    assert targets.count("aten.upsample_nearest2d.vec") == 1  # the 4x one stays a resize
    assert targets.count("aten.cat.default") == 4
    assert torch.equal(rewritten(x), model(x))
    plain = torch.nn.Conv2d(3, 3, 1)
    assert tflite_export.concat_upsampling(plain, x) is plain  # nothing to rewrite


@pytest.mark.parametrize(
    ("variant", "nhwc", "tolerance"),
    [("fp32", False, 1e-4), ("fp32", True, 1e-4), ("int8", False, 0.05), ("int8", True, 0.05)],
)
def test_tflite_runs_in_litert_with_metadata(setup, variant, nhwc, tolerance) -> None:
    bundle, quantized, calibration, images, reference, out = setup
    meta = pose_metadata(bundle, "tiny")
    context = ExportContext(bundle, meta, quantized, calibration, ExportOptions(nhwc=nhwc))
    artifact = exporter("tflite").export(context, variant, out)
    y = LiteRTRunner(artifact.path)(images)  # the runner handles the file's layout and dtype
    assert LiteRTRunner(artifact.path).nhwc == nhwc
    error = relative_error(y, reference)
    assert error < tolerance, f"relative error {error:.4f}"
    stored = json.loads(tflite_export.read_metadata(artifact.path)[METADATA_KEY])
    assert stored["keypoints"] == list(SPEC.keypoints)
    assert stored["input"]["layout"] == ("NHWC" if nhwc else "NCHW")
    assert stored["input"]["dtype"] == "float32"  # int8 files get float input/output
    assert artifact.inputs[0]["dtype"] == "float32"
    assert artifact.bytes == artifact.path.stat().st_size and len(artifact.sha256) == 64
    # Nearest upsampling goes in as concatenations: XNNPACK takes every operation.
    assert artifact.notes == [], artifact.notes


@pytest.mark.parametrize("in_float", [None, "head.final", "backbone.1.block.1.0"])
def test_tflite_int8_keeps_float_layers_and_describes_its_io(
    setup, in_float, synthetic_root: Path, tmp_path: Path
) -> None:
    """int8 input and output; a layer the quantize stage kept in float stays float in the
    file (LiteRT's converter would otherwise quantize one that sits between int8 layers), and
    the metadata gives the file's own input and output types."""
    from ai_edge_litert.interpreter import Interpreter

    bundle, quantized, calibration, images, reference, _ = setup
    if in_float is not None:
        train = CocoPoseDataset.from_folder(synthetic_root, "train", SPEC)
        val = CocoPoseDataset.from_folder(synthetic_root, "val", SPEC).first_images(10)
        context = StageContext(train, val, tmp_path / "run", console=Console(quiet=True))
        config = QuantizeConfig(calibration_samples=16, keep_float={"names": [in_float]})
        quantized, _ = quantize(bundle, config, context)
    meta = pose_metadata(bundle, "tiny")
    options = ExportOptions(nhwc=True, int8_io=True)
    context = ExportContext(bundle, meta, quantized, calibration, options)
    artifact = exporter("tflite").export(context, "int8", tmp_path)
    y = LiteRTRunner(artifact.path)(images)
    assert relative_error(y, reference) < 0.05
    interpreter = Interpreter(str(artifact.path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    float_convs = [
        op for op in interpreter._get_ops_details()
        if "CONV" in op["op_name"] and dtypes[op["inputs"][1]] == "float32"
    ]  # fmt: skip
    assert len(float_convs) == (in_float is not None)
    stored = json.loads(tflite_export.read_metadata(artifact.path)[METADATA_KEY])
    output_dtype = "float32" if in_float == "head.final" else "int8"
    assert [artifact.inputs[0]["dtype"], artifact.outputs[0]["dtype"]] == ["int8", output_dtype]
    assert [stored["input"]["dtype"], stored["output"]["dtype"]] == ["int8", output_dtype]
    assert stored["input"]["quantization"] == artifact.inputs[0]["quantization"]
    assert stored["input"]["shape"] == [1, 64, 64, 3]


def test_tflite_int8_stores_each_quantization_vector_once(setup) -> None:
    from ai_edge_litert.tools import flatbuffer_utils

    bundle, quantized, calibration, images, _, out = setup
    context = ExportContext(bundle, pose_metadata(bundle, "tiny"), quantized, calibration)
    artifact = exporter("tflite").export(context, "int8", out)
    model = flatbuffer_utils.read_model(str(artifact.path))
    unshared = out / "unshared.tflite"  # the same model, every vector written out
    unshared.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    assert artifact.bytes < 0.95 * unshared.stat().st_size
    assert torch.equal(LiteRTRunner(artifact.path)(images), LiteRTRunner(unshared)(images))


@pytest.mark.parametrize(("variant", "tolerance"), [("fp32", 1e-4), ("int8", 0.05)])
def test_onnx_runs_in_onnxruntime_with_metadata(setup, variant, tolerance) -> None:
    bundle, quantized, calibration, images, reference, out = setup
    context = ExportContext(bundle, pose_metadata(bundle, "tiny"), quantized, calibration)
    artifact = exporter("onnx").export(context, variant, out)
    y = OnnxRunner(artifact.path)(images)
    assert relative_error(y, reference) < tolerance
    stored = json.loads(onnx_export.read_metadata(artifact.path)[METADATA_KEY])
    assert stored["variant"] == f"onnx:{variant}"
    assert stored["output"]["activation"] == "softmax"
    # No exporter debug traces (local file paths, the PyTorch program) in a shipped file.
    shipped = artifact.path.read_bytes().decode("latin-1")
    assert str(Path(__file__).parent.parent) not in shipped
    assert "pkg.torch" not in shipped


def test_onnx_int8_keeps_the_quantize_stages_float_layers(
    setup, synthetic_root: Path, tmp_path: Path
) -> None:
    """Every format gets the stage's decisions: ONNX Runtime's quantizer leaves out the
    layers the quantize stage kept in float, found by weight name or module path."""
    import onnx

    bundle, _, calibration, images, reference, _ = setup
    train = CocoPoseDataset.from_folder(synthetic_root, "train", SPEC)
    val = CocoPoseDataset.from_folder(synthetic_root, "val", SPEC).first_images(10)
    context = StageContext(train, val, tmp_path / "run", console=Console(quiet=True))
    in_float = ["backbone.1.block.1.0", "head.final"]
    config = QuantizeConfig(calibration_samples=16, keep_float={"names": in_float})
    quantized, _ = quantize(bundle, config, context)
    export = ExportContext(bundle, pose_metadata(bundle, "tiny"), quantized, calibration)
    artifact = exporter("onnx").export(export, "int8", tmp_path)
    assert relative_error(OnnxRunner(artifact.path)(images), reference) < 0.08
    model = onnx.load(str(artifact.path))
    initializers = {t.name for t in model.graph.initializer}
    float_convs = sorted(
        n.input[1].removesuffix(".weight")
        for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in initializers  # not a DequantizeLinear output
    )
    assert float_convs == sorted(in_float)

    # A layer without weights by module path and order; a name with no node is an error.
    onnx_export._export_float(export, "fp32", tmp_path / "graph.onnx")
    graph = onnx.load(str(tmp_path / "graph.onnx"))
    scopes = {
        n.name: p.value for n in graph.graph.node for p in n.metadata_props if "scopes" in p.key
    }
    adds = [n.name for n in graph.graph.node if n.op_type == "Add" and "'head'," in scopes[n.name]]
    assert onnx_export.float_nodes(graph, ["head.final", "head:add#2"])[1] == adds[1]
    with pytest.raises(UnsupportedOperationError, match=r"onnx:int8: the layer\(s\) head\.nope "):
        onnx_export.float_nodes(graph, ["head.final", "head.nope"])


def test_onnx_int8_stores_each_constant_once(setup) -> None:
    import onnx
    from onnx import numpy_helper

    bundle, quantized, calibration, images, _, out = setup
    context = ExportContext(bundle, pose_metadata(bundle, "tiny"), quantized, calibration)
    artifact = exporter("onnx").export(context, "int8", out)
    model = onnx.load(str(artifact.path))
    contents = [
        (t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes())
        for t in model.graph.initializer
    ]
    assert len(contents) == len(set(contents))  # no constant twice
    # Writing every shared constant out again per user changes no number.
    users: dict[str, int] = {}
    unshared = onnx.load(str(artifact.path))
    for node in unshared.graph.node:
        for i, name in enumerate(node.input):
            users[name] = users.get(name, 0) + 1
            if users[name] > 1 and any(t.name == name for t in unshared.graph.initializer):
                shared = next(t for t in unshared.graph.initializer if t.name == name)
                twin = numpy_helper.from_array(
                    numpy_helper.to_array(shared), f"{name}_{users[name]}"
                )
                unshared.graph.initializer.append(twin)
                node.input[i] = twin.name
    assert len(unshared.graph.initializer) > len(model.graph.initializer)
    onnx.save(unshared, str(out / "unshared.onnx"))
    assert torch.equal(OnnxRunner(artifact.path)(images), OnnxRunner(out / "unshared.onnx")(images))


@pytest.mark.parametrize(
    ("variant", "image_input", "expected_op"),
    [
        ("fp16", True, "conv"),
        ("int8_weights", False, "constexpr_affine_dequantize"),
        ("w8a8", False, "quantize"),
        ("palette6", False, "constexpr_lut_to_dense"),
    ],
)
def test_coreml_package_reloads_with_metadata(setup, variant, image_input, expected_op) -> None:
    from compress.export import coreml as coreml_export

    bundle, quantized, calibration, _, _, out = setup
    options = ExportOptions(coreml_image_input=image_input)
    meta = pose_metadata(bundle, "tiny")
    artifact = exporter("coreml").export(
        ExportContext(bundle, meta, quantized, calibration, options), variant, out
    )
    operations = coreml_export.program_operations(artifact.path)
    assert expected_op in operations, sorted(set(operations))
    stored = json.loads(coreml_export.read_metadata(artifact.path)[METADATA_KEY])
    assert stored["variant"] == f"coreml:{variant}"
    assert stored["input"]["kind"] == ("image" if image_input else "tensor")
    assert artifact.bytes > 0 and len(artifact.sha256) == 64


def test_coreml_packages_are_reproducible(setup, tmp_path: Path) -> None:
    from compress.export import coreml as coreml_export

    bundle, quantized, calibration, _, _, _ = setup
    context = ExportContext(bundle, pose_metadata(bundle, "tiny"), quantized, calibration)
    first = exporter("coreml").export(context, "fp16", tmp_path / "a")
    second = exporter("coreml").export(context, "fp16", tmp_path / "b")
    assert first.sha256 == second.sha256
    assert "com.github.apple.coremltools.conversion_date" not in coreml_export.read_metadata(
        first.path
    )
    manifest = json.loads((first.path / "Manifest.json").read_text())
    assert manifest["rootModelIdentifier"] in manifest["itemInfoEntries"]


def test_coreml_refuses_a_target_too_old_for_the_variant(setup) -> None:
    bundle, quantized, calibration, _, _, out = setup
    context = ExportContext(
        bundle, pose_metadata(bundle, "tiny"), quantized, calibration,
        ExportOptions(coreml_target="iOS17"),
    )  # fmt: skip
    with pytest.raises(RecipeError, match="coreml:palette4 needs deployment target iOS18"):
        exporter("coreml").export(context, "palette4", out)


def test_pocket_export_writes_files_and_a_manifest(synthetic_root: Path, tmp_path: Path) -> None:
    import hashlib

    from typer.testing import CliRunner

    from compress.cli import app
    from compress.models import save_bundle

    torch.manual_seed(0)
    save_bundle(Bundle.build("mobilepose", SPEC, width=0.25, head_channels=16), tmp_path / "net")
    out = tmp_path / "out"
    args = ["export", str(tmp_path / "net"), "--format", "tflite:fp32", "--format", "onnx:int8",
            "--data", str(synthetic_root), "--calibration", "8", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(a["format"], a["variant"]) for a in manifest["artifacts"]] == [
        ("tflite", "fp32"),
        ("onnx", "int8"),
    ]
    for entry in manifest["artifacts"]:
        data = (out / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["failed"] == {}
    # int8 targets need calibration images; the error says so before any work.
    again = CliRunner().invoke(app, ["export", str(tmp_path / "net"), "--format", "tflite:int8"])
    assert again.exit_code == 2 and "need calibration images: give --data" in again.output


def test_an_unsupported_operation_fails_its_formats_by_name_and_the_rest_export(
    tmp_path: Path,
) -> None:
    from compress.export.run import export_targets

    bundle = Bundle.build("tests.user_models:spectral_pose", SPEC)
    context = ExportContext(bundle, pose_metadata(bundle, "spectral"))
    targets = parse_targets(["tflite:fp32", "onnx:fp32", "coreml:fp16"])
    result = export_targets(context, targets, tmp_path, Console(quiet=True))
    assert [str(a.target) for a in result.artifacts] == ["onnx:fp32"]
    for target in ("tflite:fp32", "coreml:fp16"):
        message = result.failures[target]
        assert message.startswith(f"UnsupportedOperationError: {target} cannot take "
                                  "aten.fft_rfft2.default (in ")  # fmt: skip
    assert not list(tmp_path.glob("*.tflite")) and not list(tmp_path.glob("*.mlpackage"))
