"""Find a model by reference: a shipped network's name, a checkpoint path, or an architecture.

Shipped networks live in ``compress/checkpoints/NAME.{safetensors,json}`` inside the package,
so they work on a fresh machine with no download.
"""

from __future__ import annotations

from pathlib import Path

from compress.errors import ModelError
from compress.models.bundle import Bundle, checkpoint_paths, load_bundle, refuse_pickle
from compress.models.registry import architecture_names
from compress.pose.spec import PoseSpec, coco17

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = ("student", "teacher")
DEFAULT_INPUT_SIZE = (160, 128)


def shipped_path(name: str) -> Path:
    return CHECKPOINT_DIR / name


def resolve_model(ref: str, spec: PoseSpec | None = None) -> Bundle:
    """``student``/``teacher`` (shipped), a checkpoint path, or an architecture name.

    An architecture name (registered or ``package.module:builder``) gives freshly initialised
    weights, on ``spec`` or COCO-17 at the default input size.
    """
    if ref in SHIPPED:
        weights, _ = checkpoint_paths(shipped_path(ref))
        if not weights.exists():
            raise ModelError(
                f"the shipped {ref!r} network is missing from this install ({weights})"
            )
        return load_bundle(shipped_path(ref), spec)
    path = Path(ref)
    refuse_pickle(path)
    weights, config = checkpoint_paths(path)
    if config.exists() or weights.exists():
        return load_bundle(path, spec)
    if ":" in ref or ref in architecture_names():
        return Bundle.build(ref, spec or coco17(*DEFAULT_INPUT_SIZE))
    known = ", ".join([*SHIPPED, *architecture_names()])
    raise ModelError(
        f"{ref!r} is not a shipped network, a checkpoint or an architecture (known: {known})"
    )
