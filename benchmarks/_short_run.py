"""A short, fixed training run shared by the design-choice benchmarks: same seed, data,
augmentation, AdamW, warm-up + cosine over ``steps``, scored on the synthetic val split."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.sources import synthetic_splits
from compress.models import build_architecture
from compress.pose.metrics import evaluate
from compress.pose.spec import PoseSpec
from compress.stages.losses import softmax_cross_entropy


def short_run(
    spec: PoseSpec,
    architecture: str,
    arguments: dict[str, Any],
    steps: int,
    lr: float,
    loss_fn: Callable[..., torch.Tensor] = softmax_cross_entropy,
    channels_last: bool = True,
) -> tuple[Any, float]:
    """Train ``steps`` steps from seed 0 and return (val metrics, seconds)."""
    torch.manual_seed(0)
    train_split, val_split = synthetic_splits(10000, 300, 1, 256)
    train_set = CocoPoseDataset(train_split, spec, augment=AugmentConfig())
    val_set = CocoPoseDataset(val_split, spec)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_architecture(architecture, spec, **arguments).to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=32, shuffle=True, num_workers=1, drop_last=True
    )
    start, step = time.perf_counter(), 0
    while step < steps:
        model.train()
        for batch in loader:
            warm = min(1.0, (step + 1) / 200)
            for group in optimizer.param_groups:
                group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
            images = batch["image"].contiguous(memory_format=layout)
            loss = loss_fn(model(images), batch["heatmaps"], batch["weights"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model, val_set)
    return metrics, time.perf_counter() - start
