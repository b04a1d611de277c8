"""`pocket run`, `pocket recipe check|show`: compression recipes from YAML to a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from compress.cli import app
from compress.errors import RecipeError
from compress.pipeline import prepare_run
from compress.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

GOOD = """\
version: 1
name: tiny
model:
  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}
  teacher: {architecture: respose, arguments: {widths: [16, 16, 24, 32], head_channels: 16}}
spec:
  input_size: [64, 64]
data:
  coco: {root: DATA}
stages:
  - kind: distill
    steps: 2
    batch_size: 8
    workers: 0
  - kind: prune
    channel_ratio: 0.3
    finetune: {steps: 1, batch_size: 8, workers: 0}
  - kind: quantize
    calibration_samples: 8
    keep_float: {names: [head.final]}
"""


@pytest.fixture
def write(tmp_path: Path, synthetic_root: Path):
    def write(text: str) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(text.replace("DATA", str(synthetic_root)))
        return path

    return write


# Each malformed recipe: (text replaced, replacement, the exact message expected).
MALFORMED = [
    (
        "  - kind: prune",
        "  - kind: prun",
        "recipe.yaml:15: stages.1.kind: unknown stage 'prun'; did you mean 'prune'? "
        "(allowed: distill, prune, quantize)",
    ),
    (
        "  - kind: distill\n",
        "  - \n",
        "recipe.yaml:12: stages.0: missing 'kind' (one of: distill, prune, quantize)",
    ),
    (
        "    steps: 2",
        "    steps: 0",
        "recipe.yaml:12: stages.0.steps: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "    steps: 2",
        "    stpes: 2",
        "recipe.yaml:12: unknown key 'stages.0.stpes'; did you mean 'steps'?",
    ),
    (
        "    channel_ratio: 0.3",
        "    channel_ratio: 0.3\n    macs_reduction: 0.4",
        "recipe.yaml:15: stages.1: give exactly one of 'channel_ratio' or 'macs_reduction'",
    ),
    (
        "    channel_ratio: 0.3",
        "    channel_ratio: 1.5",
        "recipe.yaml:16: stages.1.channel_ratio: Input should be less than 1 (got 1.5)",
    ),
    (
        "    channel_ratio: 0.3",
        "    channel_ratio: 0.3\n    importance: l3",
        "recipe.yaml:17: stages.1.importance: Input should be 'l1', 'l2' or 'taylor' (got 'l3')",
    ),
    (
        "  - kind: distill\n    steps: 2\n    batch_size: 8\n    workers: 0\n",
        "",
        "",  # valid: no distill stage, no teacher needed (see the next case)
    ),
    (
        "  teacher: {architecture: respose, arguments: {widths: [16, 16, 24, 32], "
        "head_channels: 16}}\n",
        "",
        "recipe.yaml:9: stages: stages.0 is 'distill', which needs a teacher: set model.teacher",
    ),
    (
        "    calibration_samples: 8",
        "    calibration_samples: 8\n    observer: minmax2",
        "recipe.yaml:20: stages.2.observer: Input should be 'minmax', 'moving_average' or "
        "'histogram' (got 'minmax2')",
    ),
    (
        "    keep_float: {names: [head.final]}",
        "    keep_float: {name: [head.final]}",
        "recipe.yaml:20: unknown key 'stages.2.keep_float.name'; did you mean 'names'? "
        "(allowed: names, types, patterns)",
    ),
    (
        "    calibration_samples: 8",
        "    calibration_samples: many",
        "recipe.yaml:19: stages.2.calibration_samples: Input should be a valid integer",
    ),
    (
        "    calibration_samples: 8",
        "    calibration_samples: 8\n    auto_max_ap_drop: 0",
        "recipe.yaml:20: stages.2.auto_max_ap_drop: Input should be greater than 0 (got 0)",
    ),
    (
        "    keep_float: {names: [head.final]}\n",
        "  - kind: prune\n    channel_ratio: 0.2\n",
        "recipe.yaml:10: stages: stages.2 is 'quantize' but stages.3 is 'prune': "
        "quantize must be the last stage",
    ),
    (
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}",
        "  student: {ref: student, architecture: mobilepose}",
        "recipe.yaml:4: model.student: give exactly one of 'ref' or 'architecture'",
    ),
    (
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}",
        "  student: {ref: student, arguments: {width: 0.5}}",
        "recipe.yaml:4: model.student: 'arguments' and 'weights' go with 'architecture', not 'ref'",
    ),
    (
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}\n",
        "",
        "recipe.yaml:3: missing required key 'model.student'",
    ),
    (
        "stages:\n",
        "stages: 3\nunused:\n",
        "recipe.yaml:10: stages: Input should be a valid list (got 3)",
    ),
    (
        "    keep_float: {names: [head.final]}\n",
        "    keep_float: {names: [head.final]}\nexport:\n  targets: [tflite:int9]\n",
        "recipe.yaml:22: export.targets: export target 'tflite:int9': tflite "
        "variants are tflite:fp32, tflite:fp16, tflite:dynamic_int8, tflite:int8; did you mean "
        "'tflite:int8'?",
    ),
    (
        "  - kind: quantize\n    calibration_samples: 8\n    keep_float: {names: [head.final]}\n",
        "export:\n  targets: [coreml:w8a8]\n",
        "recipe.yaml:18: export: coreml:w8a8 needs a quantize stage among the stages",
    ),
    (
        "    keep_float: {names: [head.final]}\n",
        "    keep_float: {names: [head.final]}\nexport:\n  targets: [onnx:fp32, tflite:fp32]\n"
        "  int8_io: true\n",
        "recipe.yaml:23: export.int8_io: acts on tflite:int8, and export.targets has none "
        "(onnx:fp32, tflite:fp32): remove int8_io or add such a target (got True)",
    ),
    (
        "    keep_float: {names: [head.final]}\n",
        "    keep_float: {names: [head.final]}\nexport:\n  targets: [onnx:fp32]\n"
        "  nhwc: false\n  coreml_target: iOS18\n",
        "recipe.yaml:24: export.coreml_target: acts on coreml targets, and export.targets has "
        "none (onnx:fp32)",  # nhwc: false is the default, harmless without a tflite target
    ),
    (
        "    finetune: {steps: 1, batch_size: 8, workers: 0}",
        "    finetune: {steps: -1}",
        "recipe.yaml:17: stages.1.finetune.steps: Input should be greater than or equal to 0 "
        "(got -1)",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), MALFORMED)
def test_malformed_recipes_give_the_exact_message(write, old: str, new: str, message: str):
    assert old in GOOD
    path = write(GOOD.replace(old, new))
    if not message:
        load_recipe(path, Recipe)
        return
    with pytest.raises(RecipeError) as info:
        load_recipe(path, Recipe)
    assert str(info.value).startswith(f"{path.parent}/{message}"), str(info.value)


# Recipes that parse but name something that does not exist: found before any work.
MISSING = [
    (
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}",
        "  student: nothing-here",
        "model.student.ref: 'nothing-here' is neither a shipped network (student, teacher) "
        "nor a checkpoint",
    ),
    (
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}",
        "  student: {architecture: mobilpose}",
        "model.student.architecture: unknown architecture 'mobilpose'; did you mean 'mobilepose'",
    ),
    (
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}",
        "  student: {architecture: mobilepose, weights: absent.safetensors}",
        "model.student.weights: ",
    ),
    (
        "    finetune: {steps: 1, batch_size: 8, workers: 0}",
        "    protect: [haed]",
        "stages.1.protect: the student has no layer 'haed'; did you mean 'head'?",
    ),
    (
        "    channel_ratio: 0.3",
        "    channel_ratio: 0.3\n    protect_patterns: ['^backbone', 'nothing$']",
        "stages.1.protect_patterns: 'nothing$' matches no layer of the student",
    ),
    (
        "    channel_ratio: 0.3",
        "    channel_ratio: 0.3\n    protect_patterns: ['back(bone']",
        "stages.1.protect_patterns: 'back(bone' is not a valid regular expression",
    ),
    (
        "    keep_float: {names: [head.final]}",
        "    keep_float: {types: [Conv3d]}",
        "stages.2.keep_float.types: no quantized layer of type 'Conv3d'",
    ),
    (
        "    keep_float: {names: [head.final]}",
        "    keep_float: {patterns: ['^nope']}",
        "stages.2.keep_float.patterns: '^nope' matches no quantized layer",
    ),
    ("  coco: {root: DATA}", "  coco: {root: /nonexistent/data}", "/nonexistent/data"),
]


@pytest.mark.parametrize(("old", "new", "message"), MISSING)
def test_missing_networks_files_and_layers_are_named_before_work(
    write, tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = write(GOOD.replace(old, new))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
    check = runner.invoke(app, ["recipe", "check", str(path)])
    assert check.exit_code == 2 and message in check.output


def test_recipe_show_fills_defaults_and_check_passes(write) -> None:
    path = write(GOOD)
    shown = runner.invoke(app, ["recipe", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    data = yaml.safe_load(shown.output)
    assert data["stages"][1]["importance"] == "l2"
    assert data["stages"][2]["observer"] == "histogram"
    assert data["stages"][2]["keep_float"]["names"] == ["head.final"]
    checked = runner.invoke(app, ["recipe", "check", str(path)])
    assert checked.exit_code == 0, checked.output
    assert "ok (3 stage(s): distill, prune, quantize)" in checked.output


def test_run_writes_the_report_and_refuses_to_overwrite(write, tmp_path: Path) -> None:
    path = write(
        GOOD
        + "export:\n  targets: [tflite:int8, onnx:fp32, coreml:fp16]\n"
        + "checks:\n  threads: [1]\n  latency_runs: 5\n  max_latency_ms: {tflite: 10000}\n"
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["distill", "prune", "quantize"]
    prune_report = report["stages"][1]
    assert prune_report["macs_after"] < prune_report["macs_before"]
    assert report["stages"][2]["details"]["float_layers"] == ["head.final"]
    assert {"ap", "pck"} <= set(report["stages"][2]["metrics_after"])
    assert (out / "float.safetensors").exists() and (out / "float.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f"{a['format']}:{a['variant']}" for a in manifest["artifacts"]] == [
        "tflite:int8",
        "onnx:fp32",
        "coreml:fp16",
    ]
    assert manifest["failed"] == {} and report["export_failed"] == {}
    assert (out / "android" / "README.md").exists() and (out / "ios" / "README.md").exists()
    assert "left_shoulder" in (out / "pose_spec.json").read_text()
    rows = {r["target"]: r for r in report["verification"]["artifacts"]}
    assert set(rows) == {"tflite:int8", "onnx:fp32", "coreml:fp16"}
    assert rows["coreml:fp16"]["runtime"].startswith("pocket MIL reference executor")
    assert rows["onnx:fp32"]["parity"]["relative_l2"] < 1e-4
    assert all(r["status"] == "verified" for r in rows.values()) and not report["checks_failed"]
    assert rows["tflite:int8"]["latency"][0]["threads"] == 1
    # report.json follows its documented schema (docs/report.schema.json is generated from it).
    from compress.report.schema import Report, report_schema

    Report.model_validate(report)
    assert json.loads((REPO / "docs" / "report.schema.json").read_text()) == report_schema()
    page = (out / "report.html").read_text()
    # Three plots and the grid of val crops with the float and artifact skeletons.
    assert "exported and verified" in page and page.count("data:image/png;base64,") == 4
    assert 'alt="overlays"' in page
    examples = report["verification"]["float"]["example_keypoints"]
    assert len(examples) == 6 and len(examples[0]) == 17
    onnx_points = np.asarray(rows["onnx:fp32"]["example_keypoints"])
    assert np.abs(onnx_points - np.asarray(examples)).max() < 0.05
    assert "| tflite:int8 | exported and verified |" in (out / "report.md").read_text()
    again = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert again.exit_code == 2
    assert "already exists; pass --force" in again.output
    # Later: the run folder re-checks (hashes, metrics, gates), and parity on own images.
    checked = runner.invoke(app, ["verify", str(out)])
    assert checked.exit_code == 0, checked.output
    assert "hashes match" in checked.output and "every check passes" in checked.output
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((90, 70, 3), 40 * i, np.uint8)).save(frames / f"f{i}.jpg")
    own = runner.invoke(app, ["verify", str(out), "--images", str(frames)])
    assert own.exit_code == 0, own.output
    assert "parity on 3 image(s)" in own.output and "coreml:fp16" in own.output
    # A changed file is caught by its hash.
    tflite = next(out.glob("*.tflite"))
    tflite.write_bytes(tflite.read_bytes() + b"x")
    tampered = runner.invoke(app, ["verify", str(out)])
    assert tampered.exit_code == 1 and f"{tflite.name}: changed since export" in tampered.output


@pytest.mark.parametrize("name", ["pose-mobile", "pose-qat"])
def test_shipped_compression_recipes_load(name: str) -> None:
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", Recipe)
    assert recipe.name == name
    assert [s.kind for s in recipe.stages] == ["distill", "prune", "quantize"]
    # The shorthand `student: student` names the shipped network, which brings its own spec.
    from compress.pipeline import load_network

    assert (recipe.model.student.ref, recipe.model.teacher.ref) == ("student", "teacher")
    student = load_network(recipe.model.student, REPO / "recipes", None, "model.student")
    assert student.architecture == "mobilepose" and student.spec.input_size == (160, 128)


def test_a_checkpoint_ref_in_shorthand_brings_its_own_spec(write, tmp_path: Path) -> None:
    from compress.models import Bundle, save_bundle
    from compress.pose.spec import coco17

    spec = coco17(64, 64, heatmap_activation="softmax")
    save_bundle(Bundle.build("tests.user_models:tiny_pose", spec), tmp_path / "mine")
    text = GOOD.replace(
        "  student: {architecture: mobilepose, arguments: {width: 0.25, head_channels: 16}}",
        f"  student: {tmp_path / 'mine'}",
    ).replace("    keep_float: {names: [head.final]}", "    keep_float: {names: [body.5]}")
    recipe, _, student, teacher = prepare_run(write(text))
    assert student.architecture == "tests.user_models:tiny_pose"
    assert student.spec.input_size == (64, 64)
    assert teacher is not None and recipe.stages[0].kind == "distill"
    # A spec section with no architecture network to apply to is refused.
    only_refs = text.replace(
        "  teacher: {architecture: respose, arguments: {widths: [16, 16, 24, 32], "
        "head_channels: 16}}\n",
        f"  teacher: {tmp_path / 'mine'}\n",
    )
    with pytest.raises(RecipeError, match="spec: applies to networks given by 'architecture'"):
        prepare_run(write(only_refs))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  - kind: quantize",
            "  - kind: quantize\n  - kind: quantize",
            "stages: one quantize stage at most, got 2: stages.2, stages.3",
        ),
        (
            "    calibration_samples: 8",
            "    calibration_samples: 8\n    qat: {features: [{student: a, teacher: b}]}",
            "stages.2.qat: feature distillation is not available for quantization-aware training",
        ),
    ],
)
def test_more_malformed_recipes(write, old: str, new: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(write(GOOD.replace(old, new)), Recipe)


def test_kl_distillation_needs_softmax_heatmaps(write) -> None:
    text = GOOD.replace(
        "  input_size: [64, 64]", "  input_size: [64, 64]\n  heatmap_activation: none"
    )
    text = text.replace("    steps: 2\n", "    steps: 2\n    loss: kl\n", 1)
    with pytest.raises(RecipeError, match=r"stages.0.loss: 'kl' compares spatial softmax"):
        prepare_run(write(text))


def test_keep_float_is_checked_against_the_quantizer_layer_names(write) -> None:
    # Names from a sensitivity table (module:operation) are accepted before the run ...
    ok = GOOD.replace("keep_float: {names: [head.final]}", "keep_float: {names: ['head:add']}")
    prepare_run(write(ok))
    # ... and a module with no quantized operation (batch norm is folded away) is refused.
    bad = GOOD.replace("keep_float: {names: [head.final]}", "keep_float: {types: [BatchNorm2d]}")
    with pytest.raises(
        RecipeError, match=r"stages.2.keep_float.types: no quantized layer of type 'BatchNorm2d'"
    ):
        prepare_run(write(bad))


def test_pocket_run_under_torchrun_writes_one_run_folder(
    tmp_path: Path, synthetic_root: Path
) -> None:
    import os
    import subprocess
    import sys

    recipe = tmp_path / "recipe.yaml"
    text = GOOD.replace("DATA", str(synthetic_root))
    recipe.write_text(text[: text.index("  - kind: quantize")])  # distill + prune
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "compress", "run", str(recipe), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["distill", "prune"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "recipe.yaml"]


def test_a_gate_that_fails_names_the_artifact_and_metric(write, tmp_path: Path) -> None:
    text = GOOD[: GOOD.index("  - kind: prune")]  # distill only: quick
    path = write(
        text
        + "export:\n  targets: [onnx:fp32]\n"
        + "checks:\n  threads: [1]\n  latency_runs: 5\n  max_latency_ms: {onnx: 0.0001}\n"
    )
    out = tmp_path / "gated"
    result = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "onnx:fp32: latency p50" in result.output and "> max_latency_ms[onnx] 0.0001" in (
        result.output
    )
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["artifacts"][0]["status"] == "failed check"
