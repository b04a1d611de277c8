"""Interrupted runs, as users interrupt them: real `pocket run` processes stopped with SIGKILL
or Ctrl-C (SIGINT) during each stage and during export.

None may leave a finished-looking run folder; each re-run resumes from the cached finished
stages, and the run that completes writes artifacts byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.test_pipeline import GOOD

RECIPE = GOOD + "export:\n  targets: [tflite:int8, onnx:fp32, coreml:fp16]\n"


def _pocket(args: list[str], cache: Path, stop_at: str | None = None, sig: int = 0):
    """Run pocket; with ``stop_at``, send ``sig`` once a line containing it is printed.
    Returns (exit code, output)."""
    env = {**os.environ, "POCKET_CACHE": str(cache), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "COLUMNS": "200"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "compress", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if stop_at is not None and stop_at in line:
            proc.send_signal(sig)
            stop_at = None
    proc.wait(timeout=600)
    return proc.returncode, "".join(lines)


def _artifact_hashes(run: Path) -> dict[str, str]:
    manifest = json.loads((run / "manifest.json").read_text())
    return {a["file"]: a["sha256"] for a in manifest["artifacts"]}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_interrupted_runs_resume_and_give_identical_artifacts(
    tmp_path: Path, synthetic_root: Path
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("DATA", str(synthetic_root)))
    runs = tmp_path / "runs"
    runs.mkdir()

    code, output = _pocket(["run", str(recipe), "--out", str(runs / "reference")], tmp_path / "c1")
    assert code == 0, output
    reference = _artifact_hashes(runs / "reference")

    out, cache = runs / "tiny", tmp_path / "c2"
    stages = cache / "stages"

    def run(stop_at: str | None = None, sig: int = 0):
        return _pocket(["run", str(recipe), "--out", str(out)], cache, stop_at, sig)

    # SIGKILL in the first stage: nothing cached, nothing written.
    code, output = run("stage 1/3: distill", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert _leftovers(runs) == ["reference"]
    assert not stages.exists() or not [p for p in stages.iterdir() if not p.name.startswith(".")]
    # Ctrl-C in the second stage: the distill stage is cached; exit 130 with a message.
    code, output = run("stage 2/3: prune", signal.SIGINT)
    assert code == 130, output
    assert "interrupted: nothing half-written was kept" in output
    assert _leftovers(runs) == ["reference"]
    # SIGKILL in the quantize stage: resumes after distill, then prune is cached too.
    code, output = run("stage 3/3: quantize", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert "distill: reused the cached result" in output
    assert "prune: reused" not in output
    assert _leftovers(runs) == ["reference"]
    # Ctrl-C during export: the temporary run folder is removed.
    code, output = run("exported tflite:int8", signal.SIGINT)
    assert code == 130, output
    assert "prune: reused the cached result" in output
    assert _leftovers(runs) == ["reference"]
    # SIGKILL during export: only a hidden temporary folder stays, never `tiny` itself.
    code, output = run("exported tflite:int8", signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = _leftovers(runs)
    assert "tiny" not in left and any(name.startswith(".tiny.partial-") for name in left)
    # The run that completes: resumed, the dead run's folder cleared, identical artifacts.
    code, output = run()
    assert code == 0, output
    assert "distill: reused" in output and "prune: reused" in output
    assert _leftovers(runs) == ["reference", "tiny"]
    assert _artifact_hashes(out) == reference  # file names come from the recipe name
