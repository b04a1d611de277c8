"""Recipes: YAML files loaded into strict, typed, frozen models.

An unknown key, a wrong type or a value out of range is a RecipeError that names the file,
the key path, its line, the bad value and what is allowed (with the nearest key on a typo).
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compress.errors import RecipeError
from compress.pose.spec import PoseSpec, coco17
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
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"{where}: unknown key {key!r}{hint} (allowed: {', '.join(allowed)})")
        elif err["type"] == "missing" and loc and isinstance(loc[-1], int):
            parent = ".".join(str(p) for p in loc[:-1])
            lines.append(f"{where}: {parent}: too few items (nothing at position {loc[-1]})")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key {key!r}")
        else:
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
            lines.append(f"{where}: {key}: {err['msg']}{shown}")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, loc: list) -> int | None:
    """Line (1-based) of the deepest YAML node along ``loc``."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            key_node = next((k for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line = key_node.start_mark.line + 1
            node = match
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
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside ``X | None`` and friends."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation
