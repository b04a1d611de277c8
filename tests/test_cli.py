from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command", [[], ["data"], ["data", "synth"], ["eval"], ["spec"], ["spec", "show"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_synth_then_ground_truth_eval(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = runner.invoke(
        app, ["data", "synth", str(out), "--train", "2", "--val", "12", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "val: 12 images" in result.output
    report = tmp_path / "gt.json"
    result = runner.invoke(
        app, ["eval", "--data", str(out), "--split", "val", "--ground-truth", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "per joint" in result.output and "left_wrist" in result.output
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["ap"] >= 0.99
    # Refuse to overwrite without --force.
    result = runner.invoke(app, ["data", "synth", str(out), "--train", "1", "--val", "1"])
    assert result.exit_code == 2
    assert "already exists; pass --force" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["eval", "--data", "/nonexistent/pocket", "--ground-truth"],
            "/nonexistent/pocket: dataset folder not found",
        ),
        (["eval", "--data", "."], "give exactly one of --model or --ground-truth"),
        (["data", "synth", "x", "--size", "12by12"], "--size: expected N or WxH"),
        (
            ["spec", "show", "--height", "250"],
            "input_height=250 is not a multiple of heatmap_stride=4",
        ),
        # Options that would act on nothing are refused, never dropped without a word.
        (
            ["export", "student", "--format", "onnx:fp32", "--image-input"],
            "--image-input acts on coreml targets, and no --format is one",
        ),
        (
            ["export", "student", "--format", "tflite:fp32", "--int8-io"],
            "--int8-io acts on tflite:int8, and no --format is one",
        ),
        (
            ["export", "student", "--format", "tflite:int8", "--opset", "17"],
            "--opset acts on onnx targets, and no --format is one",
        ),
        (
            ["export", "student", "--format", "onnx:fp32", "--data", "."],
            "--data calibrates int8 targets and no --format needs calibration (onnx:fp32)",
        ),
        (
            ["eval", "--data", ".", "--model", "student", "--width", "96"],
            "--width sets the input of --ground-truth; --model student brings its own",
        ),
        (
            ["eval", "--data", ".", "--ground-truth", "--flip-test"],
            "--flip-test averages a network's outputs; --ground-truth has none",
        ),
        (
            ["checkpoint", "student", "elsewhere", "--input-size", "64x48"],
            "--input-size goes with --from-pickle",
        ),
        (["verify", "exported/x", "--limit", "3"], "--limit caps the --images parity check"),
    ],
)
def test_bad_input_exits_2_with_a_named_error(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_spec_show_prints_json() -> None:
    result = runner.invoke(app, ["spec", "show"])
    assert result.exit_code == 0
    assert json.loads(result.output)["keypoints"][0] == "nose"


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "compress", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("pocket ")


def test_malformed_annotations_and_bad_json_target_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert (
        runner.invoke(app, ["data", "synth", str(out), "--train", "1", "--val", "3"]).exit_code == 0
    )
    result = runner.invoke(
        app, ["eval", "--data", str(out), "--ground-truth", "--json", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "is a folder; give a file name" in result.output
    ann = out / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann.read_text())
    del data["annotations"][0]["bbox"]
    ann.write_text(json.dumps(data))
    result = runner.invoke(app, ["eval", "--data", str(out), "--ground-truth"])
    assert result.exit_code == 2
    assert "annotation 1 has no 'bbox'" in result.output


def test_eval_bad_sample_policy(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert (
        runner.invoke(app, ["data", "synth", str(out), "--train", "1", "--val", "3"]).exit_code == 0
    )
    ann = out / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"][2] = 0
    ann.write_text(json.dumps(data))
    failed = runner.invoke(app, ["eval", "--data", str(out), "--ground-truth"])
    assert failed.exit_code == 2
    assert "1 bad sample: annotation 1: bbox" in failed.output and "has no area" in failed.output
    skipped = runner.invoke(
        app, ["eval", "--data", str(out), "--ground-truth", "--on-bad-sample", "skip"]
    )
    assert skipped.exit_code == 0, skipped.output
    assert "left out 1 bad sample (on_bad_sample: skip)" in skipped.output
    wrong = runner.invoke(
        app, ["eval", "--data", str(out), "--ground-truth", "--on-bad-sample", "drop"]
    )
    assert wrong.exit_code == 2 and "'drop' is not one of" in " ".join(wrong.output.split())


def test_nan_metrics_are_written_as_null(tmp_path: Path) -> None:
    out = tmp_path / "data"
    runner.invoke(app, ["data", "synth", str(out), "--train", "1", "--val", "2", "--seed", "3"])
    report = tmp_path / "m.json"
    assert (
        runner.invoke(
            app, ["eval", "--data", str(out), "--ground-truth", "--json", str(report)]
        ).exit_code
        == 0
    )
    text = report.read_text()
    assert "NaN" not in text
    json.loads(text)


def test_inspect_prints_params_macs_shapes_and_layers() -> None:
    result = runner.invoke(app, ["inspect", "mobilepose"])
    assert result.exit_code == 0, result.output
    assert "parameters  1,905,841" in result.output
    assert "(0.141 G at input (1, 3, 160, 128))" in result.output
    assert "output      (1, 17, 40, 32)" in result.output
    assert "backbone.0.0" in result.output and "Conv2d" in result.output


def test_train_then_eval_a_user_model_through_the_cli(
    tmp_path: Path, synthetic_root: Path, monkeypatch
) -> None:
    """A user's network (5 keypoints? no: COCO data needs 17) trains, saves, reloads, evaluates."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    recipe = tmp_path / "user.yaml"
    recipe.write_text(
        "version: 1\n"
        "name: user\n"
        "model: {architecture: 'tests.user_models:tiny_pose', arguments: {channels: 6}}\n"
        "spec: {input_size: [96, 72]}\n"
        f"data: {{coco: {{root: '{synthetic_root}', train_split: train, val_split: val}}}}\n"
        "train: {epochs: 1, batch_size: 8, workers: 0, max_steps: 3}\n"
    )
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "best checkpoint" in result.output
    checkpoint = tmp_path / "run" / "best.json"
    result = runner.invoke(
        app, ["eval", "--data", str(synthetic_root), "--model", str(checkpoint), "--flip-test"]
    )
    assert result.exit_code == 0, result.output
    assert "per joint" in result.output
    result = runner.invoke(app, ["inspect", str(checkpoint), "--no-layers"])
    assert "input       (1, 3, 96, 72)" in result.output


def test_missing_shipped_or_unknown_models_are_named() -> None:
    result = runner.invoke(app, ["eval", "--data", ".", "--model", "no-such-model"])
    assert result.exit_code == 2
    assert (
        "'no-such-model' is not a shipped network, a checkpoint or an architecture" in result.output
    )


def _five_keypoint_dataset(source: Path, target: Path) -> list[str]:
    """The synthetic people reduced to 5 keypoints: another keypoint set, same COCO format."""
    names = ["nose", "left_wrist", "right_wrist", "left_ankle", "right_ankle"]
    full = json.loads((source / "annotations" / "person_keypoints_val.json").read_text())
    order = full["categories"][0]["keypoints"]
    picks = [order.index(n) for n in names]
    (target / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        data = json.loads((source / "annotations" / f"person_keypoints_{split}.json").read_text())
        for ann in data["annotations"]:
            kps = ann["keypoints"]
            ann["keypoints"] = [v for i in picks for v in kps[3 * i : 3 * i + 3]]
            ann["num_keypoints"] = sum(1 for v in ann["keypoints"][2::3] if v > 0)
        data["categories"] = [
            {"id": 1, "name": "person", "keypoints": names, "skeleton": [[2, 3], [4, 5]]}
        ]
        (target / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))
    (target / "images").symlink_to(source / "images")
    return names


def test_a_user_network_with_five_keypoints_trains_saves_reloads_and_evaluates(
    tmp_path: Path, synthetic_root: Path, monkeypatch
) -> None:
    from compress.pose.spec import PoseSpec

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    data = tmp_path / "five"
    names = _five_keypoint_dataset(synthetic_root, data)
    spec = PoseSpec(
        name="five",
        keypoints=tuple(names),
        flip_pairs=(("left_wrist", "right_wrist"), ("left_ankle", "right_ankle")),
        skeleton=(("left_wrist", "right_wrist"), ("left_ankle", "right_ankle")),
        oks_sigmas=(0.026, 0.062, 0.062, 0.089, 0.089),
        input_height=80,
        input_width=48,
        heatmap_activation="softmax",
    )
    (tmp_path / "five.json").write_text(spec.to_json())
    recipe = tmp_path / "five.yaml"
    recipe.write_text(
        "version: 1\n"
        "name: five\n"
        "model: {architecture: 'tests.user_models:tiny_pose'}\n"
        "spec: {file: five.json}\n"
        "data: {coco: {root: five}}\n"
        "train: {epochs: 1, batch_size: 8, workers: 0, max_steps: 2}\n"
    )
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    checkpoint = tmp_path / "run" / "best.json"
    assert json.loads(checkpoint.read_text())["spec"]["keypoints"] == names
    result = runner.invoke(app, ["eval", "--data", str(data), "--model", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "right_ankle" in result.output and "left_eye" not in result.output
    result = runner.invoke(app, ["inspect", str(checkpoint), "--no-layers"])
    assert "output      (1, 5, 20, 12)" in result.output


def test_ctrl_c_inside_a_native_library_is_still_an_interruption() -> None:
    # Ctrl-C landing inside pydantic-core's serializer surfaces as its own error type.
    from pydantic import BaseModel, field_serializer

    from compress.cli._common import _caused_by_interrupt

    class Slow(BaseModel):
        x: int = 0

        @field_serializer("x")
        def _interrupt(self, value: int) -> int:
            raise KeyboardInterrupt

    with pytest.raises(Exception) as caught:
        Slow().model_dump_json()
    assert _caused_by_interrupt(caught.value)
    assert not _caused_by_interrupt(ValueError("an ordinary failure"))


def test_ctrl_c_inside_a_gc_callback_is_delivered_again(monkeypatch) -> None:
    # Python drops an exception raised inside a garbage-collector callback ("Exception
    # ignored"); JAX registers one, so pocket's handler re-sends such a Ctrl-C instead.
    import gc
    import os
    import signal
    import sys
    import time
    import types

    from compress.cli._common import install_interrupt_handler

    def callback(phase, info) -> None:
        pass

    previous = signal.getsignal(signal.SIGINT)
    gc.callbacks.append(callback)
    try:
        install_interrupt_handler()
        handler = signal.getsignal(signal.SIGINT)
        sent: list[int] = []
        monkeypatch.setattr(os, "kill", lambda _pid, sig: sent.append(sig))
        inside = types.SimpleNamespace(
            f_code=callback.__code__, f_back=types.SimpleNamespace(f_code=None, f_back=None)
        )
        handler(signal.SIGINT, inside)  # not raised where it would be lost...
        time.sleep(0.2)
        assert sent == [signal.SIGINT]  # ...but sent again
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, sys._getframe())  # anywhere else: raised at once
    finally:
        gc.callbacks.remove(callback)
        signal.signal(signal.SIGINT, previous)
