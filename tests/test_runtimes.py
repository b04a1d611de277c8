"""Runners and the latency harness on tiny real files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compress.errors import RuntimeFailure
from compress.export import ExportContext, exporter
from compress.export.metadata import pose_metadata
from compress.models import Bundle
from compress.pose.spec import coco17
from compress.runtimes import runner_for
from compress.verify.latency import measure_latency

SPEC = coco17(64, 64)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Bundle, dict[str, Path]]:
    torch.manual_seed(0)
    bundle = Bundle.build("tests.user_models:tiny_pose", SPEC)
    out = tmp_path_factory.mktemp("files")
    context = ExportContext(bundle, pose_metadata(bundle, "tiny"))
    paths = {f: exporter(f).export(context, "fp32", out).path for f in ("tflite", "onnx")}
    return bundle, paths


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_every_runner_gives_the_float_model_outputs(files, fmt: str) -> None:
    bundle, paths = files
    images = torch.randn(3, 3, 64, 64)
    expected = runner_for(bundle.model)(images)
    got = runner_for(paths[fmt], threads=2)(images)
    assert got.shape == expected.shape == (3, 17, 16, 16)
    assert torch.allclose(got, expected, atol=1e-4)


def test_latency_harness_times_invocations_only(files) -> None:
    bundle, paths = files
    image = torch.randn(1, 3, 64, 64)
    result = measure_latency(lambda t: runner_for(paths["tflite"], t), image, threads=1, runs=20)
    assert result.runs == 20 and result.threads == 1
    assert 0 < result.min_ms <= result.median_ms <= result.p90_ms
    assert result.load_seconds > 0 and result.device and "LiteRT" in result.runtime
    torch_result = measure_latency(lambda t: runner_for(bundle.model, t), image, runs=5)
    assert torch_result.runtime == "PyTorch (eager)"


def test_a_file_no_runtime_can_open_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    with pytest.raises(RuntimeFailure, match=r"broken\.tflite: LiteRT cannot load the file"):
        runner_for(broken)
    with pytest.raises(RuntimeFailure, match=r"no runner for \.bin files"):
        runner_for(tmp_path / "x.bin")
