from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


class Poisoned(torch.utils.data.Dataset):
    """``dataset`` with NaN pixels in sample ``index``: a stand-in for broken input data."""

    def __init__(self, dataset, index: int = 0) -> None:
        self.dataset, self.index = dataset, index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        if i == self.index:
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


@pytest.fixture
def poisoned():
    return Poisoned
