"""Output that cannot be written: disk full, permission denied, interruptions inside the write.

Real full disks and read-only folders cannot be made portably in a test (root ignores file
modes), so the operating system's error is raised where a write would hit it; what is under
test is pocket's answer: a named OutputError, exit code 2, and nothing partial left behind.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress import _io
from compress._io import atomic_directory, remove_stale_partials, write_json_atomic
from compress.cli import app
from compress.errors import OutputError

runner = CliRunner()
DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_inside_a_run_folder_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with (
        pytest.raises(OutputError, match=r"cannot write .*run: No space left on device"),
        atomic_directory(target) as work,
    ):
        (work / "half.bin").write_bytes(b"x")
        raise DISK_FULL
    assert list(tmp_path.iterdir()) == []


def test_an_interruption_inside_a_run_folder_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "run") as work:
        (work / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_permission_denied_names_the_folder(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(_io.tempfile, "mkdtemp", refuse)
    with (
        pytest.raises(
            OutputError, match=r"cannot create a folder next to .*run: Permission denied"
        ),
        atomic_directory(tmp_path / "run"),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_json_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"old": true}\n')

    def full(*args, **kwargs):
        raise DISK_FULL

    monkeypatch.setattr(_io.os, "replace", full)
    with pytest.raises(OutputError, match=r"metrics\.json: No space left on device"):
        write_json_atomic(path, {"new": True})
    assert path.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file


def test_cli_reports_a_full_disk_with_exit_2(tmp_path: Path, monkeypatch) -> None:
    import compress.data.synth as synth

    def full(*args, **kwargs):
        raise DISK_FULL

    monkeypatch.setattr(synth, "write_json", full)
    out = tmp_path / "data"
    result = runner.invoke(app, ["data", "synth", str(out), "--train", "1", "--val", "1"])
    assert result.exit_code == 2
    assert "No space left on device" in result.output
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".run.partial-{dead.stdout.strip()}-abc"
    live = tmp_path / f".run.partial-{os.getpid()}-abc"
    other = tmp_path / ".other.partial-1-abc"
    for folder in (stale, live, other):
        folder.mkdir()
    remove_stale_partials(tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
