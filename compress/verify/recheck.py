"""``pocket verify``: re-check a finished run folder later, or an app team's own images.

Hashes first (every file in manifest.json must still be what was written), then the metrics
again in each runtime with the recipe's gates, or parity on a folder of unlabeled images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from compress.errors import CheckFailed, DataError, OutputError
from compress.export.base import file_digest
from compress.models.bundle import load_bundle
from compress.pose.spec import PoseSpec
from compress.runtimes import runner_for
from compress.verify.parity import parity

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def read_manifest(run: Path) -> dict[str, Any]:
    path = run / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(
            f"{run}: no manifest.json; not a pocket run folder with exports"
        ) from None
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path}: not valid JSON ({exc})") from None


def check_hashes(run: Path, manifest: dict[str, Any]) -> list[str]:
    """Messages for files missing or changed since they were written."""
    problems = []
    for entry in manifest.get("artifacts", []):
        path = run / entry["file"]
        if not path.exists():
            problems.append(f"{entry['file']}: missing")
            continue
        size, sha = file_digest(path)
        if sha != entry["sha256"] or size != entry["bytes"]:
            problems.append(f"{entry['file']}: changed since export (sha256 {sha[:12]}..., "
                            f"manifest {entry['sha256'][:12]}...)")  # fmt: skip
    return problems


def load_images(folder: Path, spec: PoseSpec, limit: int = 256) -> torch.Tensor:
    """Images of a folder as the network's input: resized to the input size, normalised."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    h, w = spec.input_size
    norm = spec.normalization
    mean = np.asarray(norm.mean, dtype=np.float32)
    std = np.asarray(norm.std, dtype=np.float32)
    batch = []
    for path in files[:limit]:
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((w, h), Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        pixels = np.asarray(rgb, dtype=np.float32)
        if norm.color_order == "BGR":
            pixels = pixels[..., ::-1]
        batch.append(torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy()))
    return torch.stack(batch)


def image_parity(run: Path, manifest: dict[str, Any], images: torch.Tensor) -> list[dict]:
    float_bundle = load_bundle(run / "float")
    reference = runner_for(float_bundle.model)(images)
    rows = []
    for entry in manifest.get("artifacts", []):
        runner = runner_for(run / entry["file"])
        result = parity(reference, runner(images), float_bundle.spec).to_dict()
        rows.append({"target": f"{entry['format']}:{entry['variant']}", "runtime": runner.name,
                     **result})  # fmt: skip
    return rows


def fail_if(problems: list[str], what: str) -> None:
    if problems:
        raise CheckFailed(f"{what}: " + "; ".join(problems))
