"""Where a recipe's data comes from: generated synthetic data (cached) or a COCO folder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from compress.data.coco import CocoSplit, locate_split
from compress.data.synth import GENERATOR_VERSION, generate_dataset
from compress.errors import OutputError


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
    done = root / "annotations" / "person_keypoints_val.json"
    if not done.exists():
        # Runs started side by side (make train-networks) generate once: the first takes the
        # lock and writes, the others wait and then find the finished folder.
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            lock = (root.parent / f".{name}.lock").open("w")
        except OSError as exc:
            raise OutputError(
                f"cannot write the data cache {root.parent}: {exc.strerror}"
            ) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
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
