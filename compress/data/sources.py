"""Where a recipe's data comes from: generated synthetic data (cached) or a COCO folder."""

from __future__ import annotations

import os
from pathlib import Path

from compress.data.coco import CocoSplit, locate_split
from compress.data.synth import GENERATOR_VERSION, generate_dataset


def cache_root() -> Path:
    """``$POCKET_CACHE``, else ``~/.cache/pocket``."""
    return Path(os.environ.get("POCKET_CACHE", Path.home() / ".cache" / "pocket"))


def synthetic_splits(
    train: int, val: int, seed: int, image_size: int = 256
) -> tuple[CocoSplit, CocoSplit]:
    """Generate (once) and locate a synthetic dataset; the folder name encodes everything that
    decides its content, so a cached copy is reused only when it is the same data."""
    name = f"synthetic-g{GENERATOR_VERSION}-s{seed}-t{train}-v{val}-{image_size}px"
    root = cache_root() / name
    if not (root / "annotations" / "person_keypoints_val.json").exists():
        generate_dataset(
            root,
            {"train": train, "val": val},
            seed=seed,
            image_size=(image_size, image_size),
            force=True,
        )
    return locate_split(root, "train"), locate_split(root, "val")


def coco_splits(root: Path, train_split: str, val_split: str) -> tuple[CocoSplit, CocoSplit]:
    return locate_split(root, train_split), locate_split(root, val_split)
