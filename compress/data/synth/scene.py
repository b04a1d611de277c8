"""A whole synthetic image: background, 1-3 people, occluders, camera effects, annotations.

Visibility follows COCO: 2 visible, 1 labelled but hidden (behind another person, an
occluder or the person's own body), 0 unlabelled (outside the image, or a face point on the
far side of the head) with x = y = 0. It is read off the final label map, so every flag is
exactly what the image shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from compress.data.synth.body import (
    Pose,
    Proportions,
    build_skeleton,
    project,
    sample_pose,
    sample_view_yaw,
)
from compress.data.synth.render import (
    FACE_FAR,
    FACE_KEYPOINTS,
    OWNING_PARTS,
    TORSO_JOINTS,
    Appearance,
    Canvas,
    _random_color,
    draw_person,
    face_threshold,
    make_texture,
)
from compress.pose.spec import COCO17_KEYPOINTS

# Label values: person i owns [1 + 24 i, 24 (i + 1)]; 255 marks occluders.
LABELS_PER_PERSON = 24
MAX_PEOPLE = 10


@dataclass
class PersonSpec:
    """Everything that decides one person; any field left None is sampled."""

    pose: Pose | None = None
    proportions: Proportions | None = None
    appearance: Appearance | None = None
    yaw: float | None = None
    height_px: float | None = None
    anchor: tuple[float, float] | None = None  # pelvis position in pixels


@dataclass
class Occluder:
    """A flat object in front of the people: 'rect' (x0, y0, x1, y1) or 'ellipse' (same box)."""

    kind: str
    box: tuple[float, float, float, float]
    color: tuple[int, int, int] = (90, 90, 90)
    texture: Image.Image | None = None


@dataclass
class SceneConfig:
    size: tuple[int, int] = (256, 256)
    people_weights: tuple[float, ...] = (0.45, 0.35, 0.2)  # P(1), P(2), P(3) people
    height_range: tuple[float, float] = (0.2, 0.95)  # person height / image height: 4.75x
    occluder_probability: float = 0.55
    effects: bool = True


@dataclass
class Scene:
    image: Image.Image
    annotations: list[dict] = field(default_factory=list)
    label: Image.Image | None = None


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    kind = rng.choice(["gradient", "noise", "mixed"])
    if kind in ("gradient", "mixed"):
        c0 = np.array(_random_color(rng, (0.0, 0.6)), dtype=np.float32)
        c1 = np.array(_random_color(rng, (0.0, 0.6)), dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        arr = c0 + (c1 - c0) * t[..., None]
    else:
        arr = np.full((h, w, 3), rng.uniform(40, 200), dtype=np.float32)
    if kind in ("noise", "mixed"):
        cells = int(rng.integers(3, 17))
        # Mostly grey-level variation with a little colour, like real scenes.
        grey = rng.uniform(0, 255, size=(cells, cells, 1))
        tint = rng.uniform(-40, 40, size=(cells, cells, 3))
        low = np.clip(grey + tint, 0, 255).astype(np.uint8)
        smooth = np.asarray(
            Image.fromarray(low, "RGB").resize((w, h), Image.Resampling.BICUBIC), np.float32
        )
        arr = arr * 0.4 + smooth * 0.6 if kind == "mixed" else smooth
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    _clutter(rng, image)
    return image


def _clutter(rng: np.random.Generator, image: Image.Image) -> None:
    """Shapes in the background, some of them limb-like sticks to tempt the network."""
    w, h = image.size
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 14))):
        color = _random_color(rng)
        x0, y0 = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        sx, sy = rng.uniform(0.03, 0.35) * w, rng.uniform(0.03, 0.35) * h
        kind = rng.choice(["rect", "ellipse", "stick", "polygon"])
        if kind == "rect":
            draw.rectangle([x0, y0, x0 + sx, y0 + sy], fill=color)
        elif kind == "ellipse":
            draw.ellipse([x0, y0, x0 + sx, y0 + sy], fill=color)
        elif kind == "stick":
            draw.line(
                [x0, y0, x0 + rng.uniform(-sx, sx), y0 + sy],
                fill=color,
                width=int(rng.integers(2, 10)),
            )
        else:
            pts = [
                (x0 + rng.uniform(0, sx), y0 + rng.uniform(0, sy))
                for _ in range(int(rng.integers(3, 7)))
            ]
            draw.polygon(pts, fill=color)


def _sample_occluder(
    rng: np.random.Generator, size: tuple[int, int], target: np.ndarray, scale: float
) -> Occluder:
    """An object placed over ``target`` (a joint position) about a limb's size."""
    w, h = size
    ow = rng.uniform(0.08, 0.35) * scale
    oh = rng.uniform(0.08, 0.35) * scale
    if rng.random() < 0.3:  # a pole or a table edge: long and thin
        ow, oh = (ow * 0.3, oh * 3) if rng.random() < 0.5 else (ow * 3, oh * 0.3)
    cx = target[0] + rng.uniform(-0.4, 0.4) * ow
    cy = target[1] + rng.uniform(-0.4, 0.4) * oh
    color = _random_color(rng)
    texture = make_texture(rng, (w, h), color)
    kind = "rect" if rng.random() < 0.65 else "ellipse"
    return Occluder(kind, (cx - ow / 2, cy - oh / 2, cx + ow / 2, cy + oh / 2), color, texture)


def _draw_occluder(canvas: Canvas, occ: Occluder) -> None:
    x0, y0, x1, y1 = occ.box

    def fn(dr: ImageDraw.ImageDraw, ox: float, oy: float) -> None:
        box = [x0 - ox, y0 - oy, x1 - ox, y1 - oy]
        (dr.rectangle if occ.kind == "rect" else dr.ellipse)(box, fill=255)

    canvas.draw_mask(fn, occ.box, occ.color, occ.texture, Canvas.OCCLUDER)


def _camera_effects(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    if rng.random() < 0.35:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.6))))
    arr = np.asarray(image, dtype=np.float32)
    contrast = rng.uniform(0.65, 1.35)
    brightness = rng.uniform(-35, 35)
    mean = arr.mean()
    arr = (arr - mean) * contrast + mean + brightness
    if rng.random() < 0.6:
        arr = arr + rng.normal(0, rng.uniform(1, 9), size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _sample_person(rng: np.random.Generator, cfg: SceneConfig, spec: PersonSpec) -> PersonSpec:
    w, h = cfg.size
    pose = spec.pose or sample_pose(rng)
    lo, hi = cfg.height_range
    height = spec.height_px or float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) * h
    if spec.anchor is not None:
        anchor = spec.anchor
    else:
        # Mostly inside, sometimes cut by a border.
        anchor = (float(rng.uniform(0.0, 1.0) * w), float(rng.uniform(0.25, 0.85) * h))
    return PersonSpec(
        pose=pose,
        proportions=spec.proportions or Proportions.sample(rng),
        appearance=spec.appearance or Appearance.sample(rng, cfg.size),
        yaw=sample_view_yaw(rng) if spec.yaw is None else spec.yaw,
        height_px=height,
        anchor=anchor,
    )


def render_scene(
    rng: np.random.Generator,
    cfg: SceneConfig | None = None,
    people: list[PersonSpec] | None = None,
    occluders: list[Occluder] | None = None,
    background: Image.Image | None = None,
) -> Scene:
    """Render one image with its COCO annotations (``image_id``/``id`` are left to the caller).

    With ``people`` and ``occluders`` given, exactly those are drawn (missing fields sampled)
    and no random occluders are added; otherwise everything is sampled from ``rng``.
    """
    cfg = cfg or SceneConfig()
    if people is None:
        count = int(rng.choice(len(cfg.people_weights), p=cfg.people_weights)) + 1
        people = [PersonSpec() for _ in range(count)]
        # Bigger people are nearer: drawn later, over the smaller ones.
        people = [_sample_person(rng, cfg, p) for p in people]
        people.sort(key=lambda p: p.height_px)
        sample_occluders = True
    else:
        people = [_sample_person(rng, cfg, p) for p in people]
        sample_occluders = False
    if len(people) > MAX_PEOPLE:
        raise ValueError(f"at most {MAX_PEOPLE} people per image, got {len(people)}")

    canvas = Canvas(background.copy() if background is not None else _background(rng, cfg.size))
    drawn = []
    for i, person in enumerate(people):
        skel = build_skeleton(person.proportions, person.pose)
        proj = project(
            skel, person.yaw, person.pose.roll, person.height_px, np.asarray(person.anchor)
        )
        silhouette = Image.new("L", cfg.size, 0)
        labels = draw_person(
            canvas,
            proj,
            person.proportions,
            person.appearance,
            1 + LABELS_PER_PERSON * i,
            silhouette,
        )
        drawn.append((proj, person, labels, silhouette))

    if occluders is None and sample_occluders:
        occluders = []
        if rng.random() < cfg.occluder_probability:
            for _ in range(int(rng.integers(1, 3))):
                proj, person = drawn[int(rng.integers(len(drawn)))][:2]
                joint = COCO17_KEYPOINTS[int(rng.integers(5, 17))]
                occluders.append(_sample_occluder(rng, cfg.size, proj.xy[joint], person.height_px))
    for occ in occluders or []:
        _draw_occluder(canvas, occ)

    label = np.asarray(canvas.label)
    annotations = []
    for proj, person, labels, silhouette in drawn:
        ann = _annotate(proj, person.proportions, labels, silhouette, label, cfg.size)
        if ann is not None:
            annotations.append(ann)
    image = _camera_effects(rng, canvas.image) if cfg.effects else canvas.image
    return Scene(image=image, annotations=annotations, label=canvas.label)


def _annotate(
    proj,
    prop: Proportions,
    labels: dict[str, int],
    silhouette: Image.Image,
    label: np.ndarray,
    size,
) -> dict | None:
    bbox = silhouette.getbbox()
    if bbox is None:  # entirely outside the image
        return None
    w, h = size
    torso_depth = float(
        np.mean([proj.depth[f"{s}_{j}"] for s in ("left", "right") for j in TORSO_JOINTS])
    )
    tolerance = 0.5 * prop.shoulder_half
    keypoints: list[float] = []
    for name in COCO17_KEYPOINTS:
        x, y = (float(v) for v in proj.xy[name])
        inside = 0 <= x < w and 0 <= y < h
        v = 0
        if inside:
            on_top = int(label[int(y), int(x)])
            if name in FACE_KEYPOINTS:
                rel = (proj.depth[name] - proj.depth["head"]) / prop.head_radius
                if rel >= FACE_FAR:
                    v = 2 if rel > face_threshold(name) and on_top == labels["head"] else 1
            else:
                side, joint = name.split("_", 1)
                owners = {labels[f"{side}_{p}"] for p in OWNING_PARTS[joint]}
                if joint in TORSO_JOINTS and proj.depth[name] >= torso_depth - tolerance:
                    owners |= {labels["torso"], labels["hips"]}
                v = 2 if on_top in owners or on_top == 0 else 1
        if v == 0:
            keypoints += [0.0, 0.0, 0]
        else:
            # Written as COCO does: pixel indices, whose centres are at integers.
            keypoints += [round(x - 0.5, 2), round(y - 0.5, 2), v]
    x0, y0, x1, y1 = bbox
    return {
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": float(np.count_nonzero(np.asarray(silhouette))),
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
        "keypoints": keypoints,
    }
