"""Configuration of the compression stages: strict, frozen, checked when a recipe loads.

Kept apart from the stages themselves so reading a recipe never imports torchao, litert-torch
or Torch-Pruning.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compress.stages._loop import StepSchedule


class FeaturePair(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    student: str = Field(min_length=1, description="student layer name (pocket inspect)")
    teacher: str = Field(min_length=1, description="teacher layer name (pocket inspect)")


class DistillSettings(StepSchedule):
    """How a student learns from a teacher; shared by the distill stage, fine-tuning after
    pruning, and quantization-aware training."""

    # 1 = ground truth only, 0 = teacher only.
    ground_truth_weight: float = Field(default=0.5, ge=0, le=1)
    loss: Literal["auto", "kl", "mse"] = "auto"  # auto: kl for softmax heatmaps, else mse
    features: tuple[FeaturePair, ...] = ()
    feature_weight: float = Field(default=1.0, ge=0)
    channels_last: bool = True


class DistillConfig(DistillSettings):
    kind: Literal["distill"] = "distill"


class FinetuneConfig(DistillSettings):
    """Fine-tuning after each pruning round: distillation from the unpruned network."""

    steps: int = Field(default=300, ge=0)


class PruneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["prune"] = "prune"
    importance: Literal["l1", "l2", "taylor"] = "l2"
    # Exactly one target: the fraction of channels removed per layer group, or of MACs.
    channel_ratio: float | None = Field(default=None, gt=0, lt=1)
    macs_reduction: float | None = Field(default=None, gt=0, lt=1)
    scope: Literal["global", "uniform"] = "uniform"
    rounds: int = Field(default=1, ge=1)
    protect: tuple[str, ...] = ()  # layer names (and everything inside them) kept whole
    # Regular expressions on layer names (re.search), the same: e.g. every block's output.
    protect_patterns: tuple[str, ...] = ()
    max_layer_ratio: float = Field(default=0.8, gt=0, le=1)  # never remove more from one layer
    round_to: int = Field(default=8, ge=1)  # channel counts stay multiples of this
    taylor_batches: int = Field(default=8, ge=1)
    # Refit the layers that lost input channels by least squares to their outputs before
    # the round (compress/stages/reconstruct.py), on this many unaugmented training crops.
    reconstruct: bool = False
    reconstruction_samples: int = Field(default=256, ge=1)
    finetune: FinetuneConfig = FinetuneConfig()

    @model_validator(mode="after")
    def _one_target(self) -> PruneConfig:
        if (self.channel_ratio is None) == (self.macs_reduction is None):
            raise ValueError("give exactly one of 'channel_ratio' or 'macs_reduction'")
        return self


class FloatLayers(BaseModel):
    """Layers kept in float: by name (a module and everything in it), by module type (class
    name, e.g. ``ConvTranspose2d``), or by regular expression on layer names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


class QatSettings(DistillSettings):
    steps: int = Field(default=300, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    channels_last: bool = False

    @model_validator(mode="after")
    def _no_features(self) -> QatSettings:
        if self.features:
            raise ValueError(
                "feature distillation is not available for quantization-aware training "
                "(the fake-quantized graph has no named layers to hook)"
            )
        return self


class QuantizeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["quantize"] = "quantize"
    calibration_samples: int = Field(default=256, ge=1)
    observer: Literal["minmax", "moving_average", "histogram"] = "histogram"
    per_channel: bool = True
    keep_float: FloatLayers = FloatLayers()
    sensitivity: bool = False  # per-layer table: quantize one layer at a time
    sensitivity_people: int = Field(default=200, ge=1)  # val people scored per layer
    # AP points (0-100) the stage may lose; keeps the most sensitive layers in float to meet it.
    auto_max_ap_drop: float | None = Field(default=None, gt=0)
    qat: QatSettings | None = None
