"""PoseSpec: everything an app needs to interpret a pose network's input and output.

A PoseSpec is created once with a model and travels with it into every artifact's metadata
and hand-off notes. Keypoints are referred to by name everywhere (flip pairs, skeleton, limbs),
so a spec reads the same in JSON as in code; index views are derived from the names.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compress.errors import DataError, RecipeError

NamePair = tuple[str, str]


class Layout(StrEnum):
    NCHW = "NCHW"
    NHWC = "NHWC"


class Decoder(StrEnum):
    """How heatmaps become keypoints (see compress.pose.decode)."""

    DARK = "dark"  # distribution-aware sub-pixel refinement (Zhang et al., CVPR 2020)
    QUARTER_OFFSET = "quarter_offset"  # classic: move 0.25 px toward the higher neighbour


class HeatmapActivation(StrEnum):
    """How the network's raw outputs become heatmaps before decoding."""

    NONE = "none"  # outputs are heatmaps already (trained with MSE on Gaussians)
    SOFTMAX = "softmax"  # per-joint spatial logits (trained with softmax cross-entropy)


class Normalization(BaseModel):
    """Pixel normalisation: ``x = (pixel - mean) / std`` with pixels in 0..255.

    ``color_order`` is the channel order the network takes; ``mean`` and ``std`` are given in
    that same order. A plain scale to 0..1 is ``mean=(0, 0, 0), std=(255, 255, 255)``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    color_order: str = Field(default="RGB", pattern="^(RGB|BGR)$")

    @model_validator(mode="after")
    def _positive_std(self) -> Normalization:
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive in every channel, got {self.std}")
        return self

    @classmethod
    def scale(cls, divisor: float = 255.0) -> Normalization:
        return cls(mean=(0.0, 0.0, 0.0), std=(divisor, divisor, divisor))


class PoseSpec(BaseModel):
    """Keypoint set, input format and output format of a top-down heatmap pose network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    keypoints: tuple[str, ...] = Field(min_length=1)
    flip_pairs: tuple[NamePair, ...] = ()
    skeleton: tuple[NamePair, ...] = ()
    oks_sigmas: tuple[float, ...]
    # Limbs scored by PCP; defaults to the skeleton when empty.
    limbs: tuple[NamePair, ...] = ()
    # Two keypoints whose distance is the torso diameter that normalises PCK and PDJ.
    torso: NamePair | None = None
    # Keypoints of the upper body, for half-body augmentation; the rest is the lower body.
    upper_body: tuple[str, ...] = ()
    input_height: int = Field(gt=0)
    input_width: int = Field(gt=0)
    normalization: Normalization = Normalization()
    layout: Layout = Layout.NCHW
    heatmap_stride: int = Field(default=4, gt=0)
    heatmap_sigma: float = Field(default=2.0, gt=0)
    heatmap_activation: HeatmapActivation = HeatmapActivation.NONE
    decoder: Decoder = Decoder.DARK

    @model_validator(mode="after")
    def _consistent(self) -> PoseSpec:
        names = self.keypoints
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"keypoint names must be unique, repeated: {dup}")
        if len(self.oks_sigmas) != len(names):
            raise ValueError(
                f"oks_sigmas has {len(self.oks_sigmas)} values for {len(names)} keypoints"
            )
        if any(s <= 0 for s in self.oks_sigmas):
            raise ValueError("oks_sigmas must all be positive")
        known = set(names)
        for field in ("flip_pairs", "skeleton", "limbs"):
            for pair in getattr(self, field):
                _check_pair(field, pair, known)
        if self.torso is not None:
            _check_pair("torso", self.torso, known)
        unknown = [n for n in self.upper_body if n not in known]
        if unknown:
            raise ValueError(f"upper_body names unknown keypoints {unknown}")
        flipped = [n for pair in self.flip_pairs for n in pair]
        if len(set(flipped)) != len(flipped):
            raise ValueError("a keypoint appears in more than one flip pair")
        for dim, value in (("input_height", self.input_height), ("input_width", self.input_width)):
            if value % self.heatmap_stride:
                raise ValueError(
                    f"{dim}={value} is not a multiple of heatmap_stride={self.heatmap_stride}"
                )
        return self

    # ----- derived views -------------------------------------------------------------------
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.input_height, self.input_width

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(height, width) of the output heatmaps."""
        return self.input_height // self.heatmap_stride, self.input_width // self.heatmap_stride

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not a keypoint of {self.name}") from None

    @cached_property
    def flip_permutation(self) -> tuple[int, ...]:
        """perm[i] = index of the keypoint that i becomes after a horizontal flip."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            ia, ib = self.index(a), self.index(b)
            perm[ia], perm[ib] = ib, ia
        return tuple(perm)

    @cached_property
    def skeleton_indices(self) -> tuple[tuple[int, int], ...]:
        return tuple((self.index(a), self.index(b)) for a, b in self.skeleton)

    @cached_property
    def limb_indices(self) -> tuple[tuple[int, int], ...]:
        return tuple((self.index(a), self.index(b)) for a, b in (self.limbs or self.skeleton))

    @cached_property
    def torso_indices(self) -> tuple[int, int] | None:
        return (
            None if self.torso is None else (self.index(self.torso[0]), self.index(self.torso[1]))
        )

    @cached_property
    def upper_body_indices(self) -> tuple[int, ...]:
        return tuple(self.index(n) for n in self.upper_body)

    # ----- serialisation -------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> PoseSpec:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise DataError(f"{source}: not a valid PoseSpec:\n{_describe(exc)}") from None

    @classmethod
    def load(cls, path: Path) -> PoseSpec:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise DataError(f"{path}: cannot read PoseSpec ({exc.strerror})") from None
        return cls.from_json(text, source=str(path))

    def to_coco_category(self, category_id: int = 1) -> dict[str, Any]:
        """The COCO ``categories`` entry (skeleton 1-based, as COCO writes it)."""
        return {
            "id": category_id,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(self.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton_indices],
        }


def _check_pair(field: str, pair: NamePair, known: set[str]) -> None:
    missing = [n for n in pair if n not in known]
    if missing:
        raise ValueError(f"{field} entry {list(pair)} names unknown keypoints {missing}")
    if pair[0] == pair[1]:
        raise ValueError(f"{field} entry {list(pair)} joins a keypoint to itself")


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


COCO17_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# Per-keypoint OKS sigmas published with the COCO keypoint challenge.
COCO17_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip


def _pairs(*pairs: str) -> tuple[NamePair, ...]:
    return tuple(tuple(p.split("-")) for p in pairs)  # type: ignore[misc]


def coco17(input_height: int = 256, input_width: int = 192, **overrides: Any) -> PoseSpec:
    """The COCO-17 person keypoint spec (names, order, skeleton and sigmas as COCO defines)."""
    sides = ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    fields: dict[str, Any] = {
        "name": "coco17",
        "keypoints": COCO17_KEYPOINTS,
        "flip_pairs": tuple((f"left_{s}", f"right_{s}") for s in sides),
        # COCO's own skeleton, converted from its 1-based indices to names.
        "skeleton": _pairs(
            "left_ankle-left_knee",
            "left_knee-left_hip",
            "right_ankle-right_knee",
            "right_knee-right_hip",
            "left_hip-right_hip",
            "left_shoulder-left_hip",
            "right_shoulder-right_hip",
            "left_shoulder-right_shoulder",
            "left_shoulder-left_elbow",
            "right_shoulder-right_elbow",
            "left_elbow-left_wrist",
            "right_elbow-right_wrist",
            "left_eye-right_eye",
            "nose-left_eye",
            "nose-right_eye",
            "left_eye-left_ear",
            "right_eye-right_ear",
            "left_ear-left_shoulder",
            "right_ear-right_shoulder",
        ),
        "oks_sigmas": COCO17_SIGMAS,
        "limbs": _pairs(
            "left_shoulder-left_elbow",
            "left_elbow-left_wrist",
            "right_shoulder-right_elbow",
            "right_elbow-right_wrist",
            "left_hip-left_knee",
            "left_knee-left_ankle",
            "right_hip-right_knee",
            "right_knee-right_ankle",
            "left_shoulder-right_hip",
            "right_shoulder-left_hip",
        ),
        "torso": ("left_shoulder", "right_hip"),
        "upper_body": COCO17_KEYPOINTS[:11],
        "input_height": input_height,
        "input_width": input_width,
    }
    fields.update(overrides)
    return make_spec(**fields)


def make_spec(**fields: Any) -> PoseSpec:
    """Build a PoseSpec from user values; an invalid value is a RecipeError naming the field."""
    try:
        return PoseSpec(**fields)
    except ValidationError as exc:
        raise RecipeError(f"invalid pose spec:\n{_describe(exc)}") from None
