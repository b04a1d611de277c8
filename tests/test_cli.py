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
        (["eval", "--data", "."], "nothing to evaluate: pass --ground-truth"),
        (["data", "synth", "x", "--size", "12by12"], "--size: expected N or WxH"),
        (
            ["spec", "show", "--height", "250"],
            "input_height=250 is not a multiple of heatmap_stride=4",
        ),
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
