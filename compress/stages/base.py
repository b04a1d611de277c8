"""What every stage shares: its context, its report, and the before/after measurement.

A stage is a function ``(bundle, config, context) -> (bundle, details)`` that never changes its
input bundle. ``run_stage`` measures parameters, MACs, OKS-AP and PCK before and after it and
the time it took, so every stage reports the same numbers the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from compress.errors import DataError
from compress.models.bundle import Bundle
from compress.models.inspect import count_macs, count_params
from compress.pose.metrics import PoseMetrics, evaluate


@dataclass
class StageReport:
    stage: str
    seconds: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ap_drop(self) -> float:
        """OKS-AP lost by the stage, in AP points (0-100); negative when it gained."""
        return 100 * (self.metrics_before["ap"] - self.metrics_after["ap"])


@dataclass
class StageContext:
    """What stages need besides the model: data, the teacher, the seed, where to write."""

    train_set: Any
    val_set: Any
    run_dir: Path
    teacher: Bundle | None = None
    seed: int = 0
    console: Console = field(default_factory=Console)
    eval_batch_size: int = 64


def summary(metrics: PoseMetrics) -> dict[str, float]:
    return {
        "ap": metrics.ap,
        "ap50": metrics.ap50,
        "ap75": metrics.ap75,
        "ar": metrics.ar,
        "pck": metrics.pck,
        "pdj": metrics.pdj,
        "pcp": metrics.pcp,
    }


def measure(bundle: Bundle, dataset, batch_size: int = 64) -> PoseMetrics:
    """OKS-AP and friends of the bundle's model on ``dataset`` (no gradients, eval mode)."""
    set_eval(bundle.model)
    with torch.no_grad():
        return evaluate(bundle.model, dataset, batch_size=batch_size)


def calibration_batches(
    dataset, samples: int, seed: int, batch_size: int = 32
) -> list[torch.Tensor]:
    """``samples`` crops from ``dataset`` without augmentation, in a seeded order, as batches:
    the images PTQ calibrates on and pruning refits on (the same on every rank)."""
    plain = dataset.without_augment() if hasattr(dataset, "without_augment") else dataset
    order = torch.randperm(len(plain), generator=torch.Generator().manual_seed(seed))
    chosen = order[: min(samples, len(plain))].tolist()
    images = []
    for i in chosen:
        sample = plain[i]
        if not torch.isfinite(sample["image"]).all():
            raise DataError(
                f"calibration image {int(sample['image_id'])} (sample {i}) holds NaN or Inf "
                "values; check the dataset and the normalization"
            )
        images.append(sample["image"])
    return [torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]


def set_eval(model: torch.nn.Module) -> None:
    """``model.eval()`` that also works for PT2E graph modules, whose ``eval()`` refuses."""
    try:
        model.eval()
    except NotImplementedError:
        from torchao.quantization.pt2e import move_exported_model_to_eval

        move_exported_model_to_eval(model)


def size_of(bundle: Bundle) -> tuple[int, int]:
    """(parameters, MACs); a quantized bundle reports those of the float network it came from."""
    model = bundle.quantization.float_model if bundle.quantization else bundle.model
    return count_params(model), count_macs(model, bundle.spec)


StageFn = Callable[[Bundle, Any, StageContext], tuple[Bundle, dict[str, Any]]]


def run_stage(
    name: str,
    fn: StageFn,
    bundle: Bundle,
    config: Any,
    context: StageContext,
    before: PoseMetrics | None = None,
) -> tuple[Bundle, StageReport, PoseMetrics]:
    """Run one stage and measure it; returns (new bundle, report, metrics after)."""
    if before is None:
        before = measure(bundle, context.val_set, context.eval_batch_size)
    params_before, macs_before = size_of(bundle)
    start = time.perf_counter()
    result, details = fn(bundle, config, context)
    seconds = time.perf_counter() - start
    after = measure(result, context.val_set, context.eval_batch_size)
    params_after, macs_after = size_of(result)
    report = StageReport(
        stage=name,
        seconds=seconds,
        params_before=params_before,
        params_after=params_after,
        macs_before=macs_before,
        macs_after=macs_after,
        metrics_before=summary(before),
        metrics_after=summary(after),
        details=details,
    )
    return result, report, after
