"""Measure each exported file in its own runtime, with the code that measured the float model.

For every artifact: OKS-AP and the other metrics on the val split through the same
``evaluate()`` (and the drop against the float model), parity against the float model's
outputs on the same crops, and latency at each requested thread count. Every figure names the
runtime (and executor) that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from compress.errors import PocketError
from compress.pose.metrics import PoseMetrics, evaluate
from compress.runtimes import host_cpu, runner_for
from compress.stages.base import summary as stage_summary
from compress.verify.latency import measure_latency
from compress.verify.parity import keypoints, parity

PARITY_IMAGES = 64
EXAMPLES = 6  # val crops whose keypoints the report draws, float model beside each artifact


@dataclass
class Verification:
    target: str
    file: str
    runtime: str = ""
    status: str = "verified"  # verified | failed check | runtime failed
    metrics: dict[str, Any] = field(default_factory=dict)
    drop: dict[str, float] = field(default_factory=dict)  # points (0-100) against float
    parity: dict[str, Any] = field(default_factory=dict)
    latency: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # Keypoints (EXAMPLES, K, 2) in input pixels on the first parity crops, for the report.
    example_keypoints: list = field(default_factory=list)


def summary(metrics: PoseMetrics) -> dict[str, Any]:
    """The stage metrics plus what the report needs per artifact."""
    return {
        **stage_summary(metrics),
        "people": metrics.num_people,
        "per_joint_pck": {k: v.pck for k, v in metrics.per_joint.items()},
    }


def parity_images(dataset, count: int = PARITY_IMAGES) -> torch.Tensor:
    plain = dataset.without_augment() if hasattr(dataset, "without_augment") else dataset
    return torch.stack([plain[i]["image"] for i in range(min(count, len(plain)))])


def verify_artifact(
    target: str,
    path: Path,
    float_metrics: dict[str, Any],
    float_outputs: torch.Tensor,
    images: torch.Tensor,
    dataset,
    threads: tuple[int, ...] = (1, 2),
    latency_runs: int = 50,
) -> Verification:
    result = Verification(target=target, file=str(path))
    try:
        runner = runner_for(path, threads=1)
        result.runtime = runner.name
        metrics = summary(evaluate(runner, dataset, batch_size=16))
        result.metrics = metrics
        result.drop = {
            k: 100 * (float_metrics[k] - metrics[k]) for k in ("ap", "ap50", "ar", "pck", "pdj")
        }
        spec = dataset.spec
        outputs = runner(images)
        result.parity = parity(float_outputs, outputs, spec).to_dict()
        result.example_keypoints = keypoints(outputs[:EXAMPLES], spec).round(2).tolist()
        result.latency = [
            measure_latency(
                lambda t: runner_for(path, t), images[:1], t, runs=latency_runs
            ).to_dict()
            for t in threads
        ]
    except PocketError as exc:
        result.status, result.error = "runtime failed", f"{type(exc).__name__}: {exc}"
    return result


def verify_run(
    artifacts: list[tuple[str, Path]],
    float_model: torch.nn.Module,
    dataset,
    console: Console,
    threads: tuple[int, ...] = (1, 2),
    latency_runs: int = 50,
) -> dict[str, Any]:
    """Verify every (target, path) against the float model; returns the verification block
    of report.json."""
    float_runner = runner_for(float_model, threads=1)
    float_metrics = summary(evaluate(float_runner, dataset, batch_size=16))
    images = parity_images(dataset)
    float_outputs = float_runner(images)
    float_latency = [
        measure_latency(
            lambda t: runner_for(float_model, t), images[:1], t, runs=latency_runs
        ).to_dict()
        for t in threads
    ]
    rows = []
    for target, path in artifacts:
        console.print(f"verifying {target} ({path.name})", soft_wrap=True)
        row = verify_artifact(
            target, path, float_metrics, float_outputs, images, dataset, threads, latency_runs
        )
        rows.append(row.__dict__)
        if row.error:
            console.print(f"  [red]{escape(row.error)}[/]", soft_wrap=True)
        else:
            p50 = row.latency[0]["median_ms"] if row.latency else float("nan")
            console.print(
                f"  AP {row.metrics['ap']:.4f} ({-row.drop['ap']:+.2f} points)  "
                f"OKS agreement {row.parity['keypoint_oks']:.4f}  p50 {p50:.2f} ms "
                f"({row.runtime}, 1 thread)",
                soft_wrap=True,
            )
    return {
        "device": host_cpu(),
        "threads": list(threads),
        "float": {
            "metrics": float_metrics,
            "latency": float_latency,
            "example_keypoints": keypoints(float_outputs[:EXAMPLES], dataset.spec)
            .round(2)
            .tolist(),
        },
        "artifacts": rows,
    }
