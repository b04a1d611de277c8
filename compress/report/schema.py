"""The documented schema of report.json (pydantic models; ``report_schema()`` gives the JSON
Schema, written to docs/report.schema.json). The run writes the report, then validates it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metrics(_Model):
    ap: float | None
    ap50: float | None
    ap75: float | None = None
    ar: float | None
    pck: float | None
    pdj: float | None
    pcp: float | None
    people: int | None = None
    per_joint_pck: dict[str, float | None] | None = None


class StageReport(_Model):
    stage: Literal["distill", "prune", "quantize"]
    seconds: float = Field(ge=0)
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    metrics_before: Metrics
    metrics_after: Metrics
    details: dict[str, Any]


class Latency(_Model):
    runtime: str
    threads: int = Field(ge=1)
    device: str
    load_seconds: float
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float


class Parity(_Model):
    images: int
    max_abs_error: float
    mean_abs_error: float
    relative_l2: float
    keypoint_oks: float
    mean_keypoint_shift_px: float
    worst_joints: list[tuple[str, float]]


class ArtifactVerification(_Model):
    target: str = Field(pattern=r"^[a-z]+:[a-z0-9_]+$")
    file: str
    bytes: int
    runtime: str
    status: Literal["verified", "failed check", "runtime failed"]
    metrics: Metrics | dict
    drop: dict[str, float]
    parity: Parity | dict
    latency: list[Latency]
    error: str | None
    failed_checks: list[str]
    # Keypoints (x, y) in input pixels on the first val crops, drawn in report.html.
    example_keypoints: list[list[tuple[float, float]]] = []


class FloatVerification(_Model):
    metrics: Metrics
    latency: list[Latency]
    example_keypoints: list[list[tuple[float, float]]] = []


class Verification(_Model):
    device: str
    threads: list[int]
    float: FloatVerification
    artifacts: list[ArtifactVerification]


class Report(_Model):
    recipe: str
    recipe_sha256: str
    name: str
    seconds: float
    start: Metrics
    stages: list[StageReport]
    export_failed: dict[str, str]
    verification: Verification | None
    checks_failed: list[str]
    versions: dict[str, Any]


def report_schema() -> dict[str, Any]:
    return Report.model_json_schema()
