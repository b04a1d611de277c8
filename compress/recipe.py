"""Recipes: YAML files loaded into strict, typed, frozen models.

An unknown key, a wrong type or a value out of range is a RecipeError that names the file,
the key path, its line, the bad value and what is allowed (with the nearest key on a typo).
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from compress.errors import RecipeError
from compress.pose.spec import PoseSpec, coco17
from compress.stages.configs import DistillConfig, PruneConfig, QuantizeConfig
from compress.stages.train import TrainConfig

RECIPE_VERSION = 1
M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSection(Strict):
    architecture: str = Field(min_length=1, description="registered name or package.module:builder")
    arguments: dict[str, Any] = Field(default_factory=dict)
    checkpoint: Path | None = None  # start from these weights


class SpecSection(Strict):
    """The PoseSpec: COCO-17 at ``input_size`` unless ``file`` names a PoseSpec JSON."""

    input_size: tuple[int, int] = (160, 128)  # (height, width)
    heatmap_activation: Literal["softmax", "none"] = "softmax"
    file: Path | None = None


class SyntheticData(Strict):
    train: int = Field(default=3000, ge=0)
    val: int = Field(default=300, ge=1)
    seed: int = 0
    image_size: int = Field(default=256, ge=32)


class CocoData(Strict):
    root: Path
    train_split: str = "train"
    val_split: str = "val"


class DataSection(Strict):
    synthetic: SyntheticData | None = None
    coco: CocoData | None = None
    # A person that cannot be used (bad keypoint count, box without area or outside its image,
    # missing or undecodable image): stop with the list (error), or leave it out (skip).
    on_bad_sample: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if (self.synthetic is None) == (self.coco is None):
            raise ValueError("give exactly one of 'synthetic' or 'coco'")
        return self


class TrainRecipe(Strict):
    version: Literal[1]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelSection
    spec: SpecSection = SpecSection()
    data: DataSection
    train: TrainConfig = TrainConfig()

    def pose_spec(self, base: Path) -> PoseSpec:
        if self.spec.file is not None:
            return PoseSpec.load(resolve(base, self.spec.file))
        return coco17(*self.spec.input_size, heatmap_activation=self.spec.heatmap_activation)


# ----- compression recipes (pocket run) ------------------------------------------------------
class NetworkSection(Strict):
    """A network: ``ref`` (a shipped network or a pocket checkpoint), or ``architecture`` (a
    registered name or ``package.module:builder``) with its ``arguments`` and ``weights``
    (a safetensors file; without it the weights are freshly initialised)."""

    ref: str | None = Field(default=None, min_length=1)
    architecture: str | None = Field(default=None, min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NetworkSection:
        if (self.ref is None) == (self.architecture is None):
            raise ValueError("give exactly one of 'ref' or 'architecture'")
        if self.ref is not None and (self.arguments or self.weights is not None):
            raise ValueError("'arguments' and 'weights' go with 'architecture', not 'ref'")
        return self


class ModelsSection(Strict):
    student: NetworkSection
    teacher: NetworkSection | None = None

    @field_validator("student", "teacher", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"ref": value} if isinstance(value, str) else value


class PipelineSpecSection(Strict):
    """The PoseSpec when the network does not carry one: a PoseSpec JSON ``file``, or COCO-17
    at ``input_size``. Shipped networks and pocket checkpoints bring their own."""

    input_size: tuple[int, int] | None = None
    heatmap_activation: Literal["softmax", "none"] = "softmax"
    file: Path | None = None


class ExportSection(Strict):
    """Files to produce after the stages (``format:variant``) and their options."""

    targets: list[str] = Field(min_length=1)
    nhwc: bool = False  # TFLite: NHWC input/output
    int8_io: bool = False  # TFLite int8: int8 input/output instead of float
    onnx_opset: int = Field(default=18, ge=13, le=23)
    coreml_target: Literal["iOS16", "iOS17", "iOS18"] = "iOS17"
    coreml_image_input: bool = False

    @field_validator("targets")
    @classmethod
    def _known(cls, targets: list[str]) -> list[str]:
        from compress.export import parse_targets

        try:
            parse_targets(targets)
        except RecipeError as exc:
            raise ValueError(str(exc)) from None
        return targets

    @field_validator("nhwc", "int8_io", "onnx_opset", "coreml_target", "coreml_image_input")
    @classmethod
    def _acts_on_a_target(cls, value: Any, info: ValidationInfo) -> Any:
        from compress.export import options_without_target, parse_targets

        targets = info.data.get("targets")  # absent when the targets themselves are wrong
        if targets is None or value == cls.model_fields[info.field_name].default:
            return value
        unused = options_without_target([info.field_name], parse_targets(targets))
        if unused:
            raise ValueError(
                f"acts on {unused[info.field_name]}, and export.targets has none "
                f"({', '.join(targets)}): remove {info.field_name} or add such a target"
            )
        return value


class ChecksSection(Strict):
    """Verification of every exported file in its own runtime, and the gates it must pass.

    Latency and size limits are keyed by ``format`` or ``format:variant``; latency keys may
    end in ``@THREADS`` (default: 1 thread).
    """

    threads: tuple[int, ...] = Field(default=(1, 2), min_length=1)
    latency_runs: int = Field(default=50, ge=5)
    max_ap_drop: float | None = Field(default=None, ge=0)  # AP points (0-100)
    max_pck_drop: float | None = Field(default=None, ge=0)  # PCK points (0-100)
    max_latency_ms: dict[str, float] = Field(default_factory=dict)
    max_size_mb: dict[str, float] = Field(default_factory=dict)


Stage = Annotated[DistillConfig | PruneConfig | QuantizeConfig, Field(discriminator="kind")]


class Recipe(Strict):
    """``pocket run``: a network through compression stages (export and checks follow)."""

    version: Literal[1]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelsSection
    spec: PipelineSpecSection | None = None
    data: DataSection
    stages: list[Stage] = Field(default_factory=list)
    export: ExportSection | None = None
    checks: ChecksSection | None = None
    seed: int = 0

    @field_validator("stages")
    @classmethod
    def _stage_order(cls, stages: list, info: ValidationInfo) -> list:
        kinds = [stage.kind for stage in stages]
        if kinds.count("quantize") > 1:
            where = [f"stages.{i}" for i, kind in enumerate(kinds) if kind == "quantize"]
            raise ValueError(f"one quantize stage at most, got {len(where)}: {', '.join(where)}")
        if "quantize" in kinds and kinds[-1] != "quantize":
            at = kinds.index("quantize")
            raise ValueError(
                f"stages.{at} is 'quantize' but stages.{at + 1} is {kinds[at + 1]!r}: quantize "
                "must be the last stage (a quantized network is not trained or pruned further)"
            )
        model = info.data.get("model")
        if "distill" in kinds and model is not None and model.teacher is None:
            raise ValueError(
                f"stages.{kinds.index('distill')} is 'distill', which needs a teacher: "
                "set model.teacher"
            )
        return stages

    @field_validator("export")
    @classmethod
    def _quantized_targets_need_a_stage(
        cls, export: ExportSection | None, info: ValidationInfo
    ) -> ExportSection | None:
        from compress.export import exporter, parse_targets

        stages = info.data.get("stages") or []
        if export is None or any(stage.kind == "quantize" for stage in stages):
            return export
        for target in parse_targets(export.targets):
            if target.variant in type(exporter(target.format)).needs_quantized:
                raise ValueError(f"{target} needs a quantize stage among the stages")
        return export


def resolve(base: Path, path: Path) -> Path:
    """Paths in a recipe are relative to the recipe's folder."""
    return path if path.is_absolute() else (base / path)


def recipe_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ----- loading with line numbers -------------------------------------------------------------
def load_recipe(path: Path, model: type[M]) -> M:
    """Parse ``path`` into ``model``; every problem is one RecipeError naming key and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(
            f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe is a YAML mapping of sections, got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_explain(path, exc, node, model)) from None


def _explain(
    path: Path, exc: ValidationError, root: yaml.Node | None, model: type[BaseModel]
) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        key = _display(loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"{where}: unknown key {key!r}{hint} (allowed: {', '.join(allowed)})")
        elif err["type"] == "missing" and loc and isinstance(loc[-1], int):
            parent = _display(loc[:-1])
            lines.append(f"{where}: {parent}: too few items (nothing at position {loc[-1]})")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key {key!r}")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            allowed = sorted(t for m in _models_in(Stage) if (t := _tag_of(m)))
            got = err.get("ctx", {}).get("tag")
            if got is None:
                lines.append(f"{where}: {key}: missing 'kind' (one of: {', '.join(allowed)})")
            else:
                near = difflib.get_close_matches(str(got), allowed, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                lines.append(
                    f"{where}: {key}.kind: unknown stage {got!r}{hint} "
                    f"(allowed: {', '.join(allowed)})"
                )
        else:
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
            message = err["msg"].removeprefix("Value error, ")  # our own validators' words
            lines.append(f"{where}: {key}: {message}{shown}")
    return "\n".join(lines)


def _display(loc: list) -> str:
    """The key path without union tags: ``stages.0.steps``, not ``stages.0.distill.steps``."""
    tags = {_tag_of(m) for m in _models_in(Stage)}
    shown = [p for i, p in enumerate(loc) if not (i and isinstance(loc[i - 1], int) and p in tags)]
    return ".".join(str(p) for p in shown)


def _line_of(node: yaml.Node | None, loc: list) -> int | None:
    """Line (1-based) of the deepest YAML node along ``loc``."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                continue  # a union's tag (the stage kind) in the path: stay on this mapping
            line = pair[0].start_mark.line + 1
            node = pair[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _allowed_keys(model: type[BaseModel], loc: list) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            current = _item_type(current)
            continue
        options = _models_in(current)
        tagged = [m for m in options if _tag_of(m) == part]
        if tagged:  # the discriminator's value names the union member
            current = tagged[0]
            continue
        if len(options) != 1:
            return []
        field = options[0].model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    options = _models_in(current)
    return list(options[0].model_fields) if len(options) == 1 else []


def _item_type(annotation: Any) -> Any:
    """``list[X]`` / ``tuple[X, ...]`` -> X (through ``X | None``)."""
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) in (list, tuple):
            args = get_args(candidate)
            return args[0] if args else Any
    return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModels inside ``X``, ``X | None``, ``Annotated[A | B, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += _models_in(arg)
    return found


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    return field.default if field is not None and isinstance(field.default, str) else None
