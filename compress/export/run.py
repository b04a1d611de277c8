"""Export a set of targets into a folder: each format on its own, failures named and kept.

An operation a target cannot take fails that target only; the others still export. The
manifest lists every file (format, variant, bytes, sha256) with the tool versions and the
recipe hash, and the formats that failed with the reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from compress.errors import PocketError
from compress.export import exporter
from compress.export.base import Artifact, ExportContext, Target
from compress.export.support import check_supported


@dataclass
class ExportResult:
    artifacts: list[Artifact] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # target -> error
    seconds: dict[str, float] = field(default_factory=dict)


def export_targets(
    context: ExportContext, targets: list[Target], folder: Path, console: Console
) -> ExportResult:
    folder.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    for target in targets:
        start = time.perf_counter()
        try:
            check_supported(target.format, target.variant, context.operations())
            artifact = exporter(target.format).export(context, target.variant, folder)
        except PocketError as exc:
            result.failures[str(target)] = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]export failed[/] {target}: {escape(str(exc))}", soft_wrap=True)
            continue
        finally:
            result.seconds[str(target)] = time.perf_counter() - start
        result.artifacts.append(artifact)
        console.print(
            f"exported {target}: {artifact.path.name} ({artifact.bytes / 1e6:.2f} MB, "
            f"{result.seconds[str(target)]:.1f} s)",
            soft_wrap=True,
        )
        for note in artifact.notes:
            console.print(f"  {note}", soft_wrap=True)
    return result


def manifest(result: ExportResult, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    from compress.pipeline import versions

    return {
        **extra,
        "versions": versions(),
        "artifacts": [
            {
                "file": str(a.path.relative_to(folder)),
                "format": a.format,
                "variant": a.variant,
                "bytes": a.bytes,
                "sha256": a.sha256,
                "inputs": a.inputs,
                "outputs": a.outputs,
                "notes": a.notes,
                "export_seconds": round(result.seconds[str(a.target)], 2),
            }
            for a in result.artifacts
        ],
        "failed": result.failures,
    }


def write_manifest(result: ExportResult, folder: Path, extra: dict[str, Any]) -> Path:
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest(result, folder, extra), indent=1) + "\n")
    return path
