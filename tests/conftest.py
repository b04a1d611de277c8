from __future__ import annotations

from pathlib import Path

import pytest

from compress.data.synth import generate_dataset
from compress.pose.spec import PoseSpec, coco17


@pytest.fixture(scope="session")
def spec() -> PoseSpec:
    return coco17()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic COCO folder shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    generate_dataset(root, {"train": 12, "val": 80}, seed=7, workers=2)
    return root
