"""The Core ML reference executor against PyTorch, for every Core ML variant we export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.errors import RuntimeFailure
from compress.export import ExportContext, ExportOptions, exporter
from compress.export.metadata import pose_metadata
from compress.models import Bundle
from compress.pose.spec import coco17
from compress.runtimes.mil import CoremlReferenceRunner, MilProgram
from compress.stages.base import StageContext
from compress.stages.configs import QuantizeConfig
from compress.stages.quantize import calibration_batches, quantize

SPEC = coco17(64, 64, heatmap_activation="softmax")


@pytest.fixture(scope="module")
def networks(synthetic_root: Path, tmp_path_factory):
    # Layers large enough (> 2048 weights) that coremltools really compresses them.
    torch.manual_seed(0)
    bundle = Bundle.build("respose", SPEC, widths=[16, 32, 48, 64], head_channels=32)
    train = CocoPoseDataset.from_folder(synthetic_root, "train", SPEC, augment=AugmentConfig())
    val = CocoPoseDataset.from_folder(synthetic_root, "val", SPEC)
    context = StageContext(train, val, tmp_path_factory.mktemp("run"), console=Console(quiet=True))
    quantized, _ = quantize(bundle, QuantizeConfig(calibration_samples=16), context)
    images = calibration_batches(train, 4, seed=1)[0]
    return bundle, quantized, images, tmp_path_factory.mktemp("ml")


@pytest.mark.parametrize(
    ("variant", "tolerance", "op"),
    [
        ("fp16", 0.01, "conv"),
        ("int8_weights", 0.03, "constexpr_affine_dequantize"),
        ("w8a8", 0.08, "quantize"),
        ("palette8", 0.03, "constexpr_lut_to_dense"),
        ("palette4", 0.25, "constexpr_lut_to_dense"),
    ],
)
def test_reference_executor_matches_pytorch(networks, variant, tolerance, op) -> None:
    bundle, quantized, images, out = networks
    target = "iOS18" if variant == "palette4" else "iOS17"
    context = ExportContext(
        bundle, pose_metadata(bundle, "t"), quantized, [], ExportOptions(coreml_target=target)
    )
    artifact = exporter("coreml").export(context, variant, out)
    runner = CoremlReferenceRunner(artifact.path)
    assert op in {o.op_type for o in runner.program.function.operations}
    reference_model = quantized.model if variant == "w8a8" else bundle.model.eval()
    with torch.no_grad():
        expected = reference_model(images)
    got = runner(images)
    error = float((got - expected).norm() / expected.norm())
    assert error < tolerance, f"{variant}: relative error {error:.4f}"
    assert "reference executor" in runner.label


def test_image_input_runs_the_normalisation_inside(networks) -> None:
    bundle, _, images, out = networks
    context = ExportContext(
        bundle, pose_metadata(bundle, "t"), None, [], ExportOptions(coreml_image_input=True)
    )
    artifact = exporter("coreml").export(context, "fp16", out / "image")
    with torch.no_grad():
        expected = bundle.model.eval()(images)
    # The runner feeds pixels (undoing the normalisation), the model normalises inside.
    runner = CoremlReferenceRunner(artifact.path)
    assert runner.pixels is not None
    got = runner(images)
    assert float((got - expected).norm() / expected.norm()) < 0.01


def test_an_unknown_op_is_refused_by_name(networks, monkeypatch) -> None:
    import compress.runtimes.mil as mil

    bundle, _, _, out = networks
    artifact = exporter("coreml").export(
        ExportContext(bundle, pose_metadata(bundle, "t")), "fp16", out / "unknown"
    )
    monkeypatch.delitem(mil.OPS, "conv")
    with pytest.raises(RuntimeFailure, match=r"does not know op 'conv' \("):
        MilProgram(artifact.path)
