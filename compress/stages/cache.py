"""Finished float stages, kept by content so an interrupted or repeated run resumes.

A stage's result depends on its input network, its config, the data, the seed and (for
distillation) the teacher; the cache key is a SHA-256 over exactly those, so an entry is
reused only for the same work. An entry is the output network as a pocket checkpoint plus the
stage's report, written to a temporary folder and renamed, so a run killed mid-write leaves
no entry that looks complete. The quantize stage is not cached: its result is a PT2E graph
rather than a checkpoint, and it always runs last, from the cached float network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from compress import __version__
from compress._io import atomic_directory
from compress.errors import ModelError, OutputError
from compress.models.bundle import Bundle, load_bundle, save_bundle
from compress.stages.base import StageReport

# Raised whenever a stage gives other results for the same inputs, so no older entry is reused
# (2: the fine-tuning loops draw every pass's own augmentation in their worker).
CACHE_FORMAT = 2
CACHEABLE = ("distill", "prune")


def network_digest(bundle: Bundle) -> str:
    """SHA-256 of what defines a float network: architecture, arguments, shapes, weights."""
    h = hashlib.sha256()
    header = {
        "architecture": bundle.architecture,
        "arguments": bundle.arguments,
        "layer_shapes": bundle.layer_shapes,
        "spec": json.loads(bundle.spec.to_json()),
    }
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in sorted(bundle.model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_identity(recipe_data: Any, train_set, val_set) -> dict[str, Any]:
    """The data a stage saw: the recipe's data section and the annotation files' hashes (a
    synthetic folder's name already encodes its generator version, sizes and seed)."""
    files = {}
    for name, dataset in (("train", train_set), ("val", val_set)):
        path = Path(dataset.split.annotation_file)
        files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"section": recipe_data.model_dump(mode="json"), "annotations": files}


class StageCache:
    """Entries under ``root/<key>/``: ``model.safetensors``, ``model.json``, ``report.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(
        self,
        config: Any,
        bundle: Bundle,
        data: dict[str, Any],
        seed: int,
        teacher: Bundle | None,
    ) -> str:
        parts = {
            "format": CACHE_FORMAT,
            "pocket": __version__,
            "torch": torch.__version__,
            "stage": config.model_dump(mode="json"),
            "network": network_digest(bundle),
            "teacher": network_digest(teacher) if teacher is not None else None,
            "data": data,
            "seed": seed,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def load(self, key: str, spec) -> tuple[Bundle, StageReport] | None:
        entry = self.root / key
        if not (entry / "report.json").is_file():
            return None
        try:
            bundle = load_bundle(entry / "model", spec)
            report = StageReport(**json.loads((entry / "report.json").read_text()))
        except (ModelError, OSError, ValueError, TypeError):
            return None  # a damaged entry is recomputed, never trusted
        return bundle, report

    def store(self, key: str, bundle: Bundle, report: StageReport) -> None:
        """Best effort: a cache that cannot be written costs time, not correctness."""
        try:
            with atomic_directory(self.root / key, force=True) as work:
                save_bundle(bundle, work / "model")
                (work / "report.json").write_text(json.dumps(dataclasses.asdict(report)) + "\n")
        except OutputError:
            return
