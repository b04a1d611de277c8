"""Drawing a projected body: filled, tapered parts in depth order, with clothing and a face.

Every part is drawn three times through one mask: into the image (colour or texture), into the
scene's label map (which part is on top at each pixel, used for visibility flags) and into the
person's own silhouette (used for the box and area). PIL draws polygon vertices at pixel
centres, so corner coordinates are shifted by half a pixel before drawing.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from compress.data.synth.body import Projected, Proportions

Color = tuple[int, int, int]
SIDES = ("left", "right")
FACE_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
# A face point is drawn, and may be flagged visible, when its depth relative to the head
# centre (in head radii, toward the camera) exceeds this; one table for drawing and labels.
FACE_FRONT = {"nose": -0.1, "eye": 0.05, "ear": -0.25}
# Deeper than this behind the head centre a face point is not even inferable: unlabelled.
FACE_FAR = -0.5


def face_threshold(name: str) -> float:
    return FACE_FRONT[name.rsplit("_", 1)[-1]]


SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 196), (241, 194, 158), (224, 172, 128), (198, 134, 94),
    (161, 102, 66), (121, 77, 48), (90, 56, 37), (233, 203, 167),
)  # fmt: skip
HAIR_COLORS: tuple[Color, ...] = (
    (20, 16, 14), (60, 40, 25), (110, 75, 40), (190, 160, 100), (150, 150, 150), (120, 30, 20),
)  # fmt: skip


def _random_color(rng: np.random.Generator, sat: tuple[float, float] = (0.2, 0.9)) -> Color:
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(0.15, 0.95)
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def make_texture(
    rng: np.random.Generator, size: tuple[int, int], base: Color
) -> Image.Image | None:
    """A clothing texture covering the whole canvas, or None for a plain colour."""
    kind = rng.choice(["plain", "plain", "stripes", "checker", "dots"])
    if kind == "plain":
        return None
    w, h = size
    other = np.array(_random_color(rng), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(4, 14))
    if kind == "stripes":
        angle = float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]))
        coord = xx * np.cos(angle) + yy * np.sin(angle)
        pattern = (coord // (period / 2)) % 2
    elif kind == "checker":
        pattern = ((xx // period) + (yy // period)) % 2
    else:
        pattern = (
            (np.hypot(xx % period - period / 2, yy % period - period / 2)) < period / 4
        ) * 1.0
    rgb = np.where(pattern[..., None] > 0, other, np.array(base, dtype=np.float32))
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


@dataclass(frozen=True)
class Appearance:
    skin: Color
    hair: Color
    shirt: Color
    pants: Color
    shoes: Color
    shirt_texture: Image.Image | None
    pants_texture: Image.Image | None
    short_sleeves: bool
    shorts: bool
    bald: bool

    @classmethod
    def sample(cls, rng: np.random.Generator, canvas_size: tuple[int, int]) -> Appearance:
        shirt, pants = _random_color(rng), _random_color(rng, (0.05, 0.7))
        return cls(
            skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
            hair=HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))],
            shirt=shirt,
            pants=pants,
            shoes=_random_color(rng, (0.0, 0.5)),
            shirt_texture=make_texture(rng, canvas_size, shirt),
            pants_texture=make_texture(rng, canvas_size, pants),
            short_sleeves=bool(rng.random() < 0.35),
            shorts=bool(rng.random() < 0.25),
            bald=bool(rng.random() < 0.1),
        )


@dataclass(frozen=True)
class Part:
    """One drawable piece of a body. ``shape`` is ('capsule', a, b, wa, wb) or ('disk', c, r)."""

    name: str
    shape: tuple
    depth: float
    fill: Color
    texture: Image.Image | None = None


class Canvas:
    """The image being drawn plus its label map; label 0 is background, 255 an occluder."""

    OCCLUDER = 255

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.label = Image.new("L", image.size, 0)
        self.size = image.size

    def draw_mask(
        self,
        mask_fn,
        bounds: tuple[float, float, float, float],
        fill: Color,
        texture: Image.Image | None,
        label: int,
        silhouette: Image.Image | None = None,
    ) -> None:
        """Rasterise ``mask_fn(draw, ox, oy)`` inside ``bounds`` and paint it everywhere."""
        w, h = self.size
        x0, y0 = max(0, int(np.floor(bounds[0])) - 1), max(0, int(np.floor(bounds[1])) - 1)
        x1, y1 = min(w, int(np.ceil(bounds[2])) + 2), min(h, int(np.ceil(bounds[3])) + 2)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        # PIL truncates float vertices to the pixel whose centre is floor(v) + 0.5 in corner
        # coordinates, so passing corner coordinates unshifted rounds them to the nearest
        # pixel centre: no systematic bias.
        mask_fn(ImageDraw.Draw(mask), x0, y0)
        box = (x0, y0, x1, y1)
        paint = texture.crop(box) if texture is not None else fill
        self.image.paste(paint, box, mask)
        self.label.paste(label, box, mask)
        if silhouette is not None:
            silhouette.paste(255, box, mask)


def _capsule_fn(a: np.ndarray, b: np.ndarray, wa: float, wb: float):
    d = b - a
    n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)

    def draw(dr: ImageDraw.ImageDraw, ox: float, oy: float) -> None:
        o = np.array([ox, oy])
        quad = [a + n * wa - o, b + n * wb - o, b - n * wb - o, a - n * wa - o]
        dr.polygon([tuple(p) for p in quad], fill=255)
        for c, r in ((a - o, wa), (b - o, wb)):
            dr.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)

    lo = np.minimum(a, b) - max(wa, wb)
    hi = np.maximum(a, b) + max(wa, wb)
    return draw, (lo[0], lo[1], hi[0], hi[1])


def _disk_fn(c: np.ndarray, r: float):
    def draw(dr: ImageDraw.ImageDraw, ox: float, oy: float) -> None:
        dr.ellipse([c[0] - ox - r, c[1] - oy - r, c[0] - ox + r, c[1] - oy + r], fill=255)

    return draw, (c[0] - r, c[1] - r, c[0] + r, c[1] + r)


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)  # type: ignore[return-value]


# Parts whose drawing proves a keypoint visible when they are on top at its pixel.
OWNING_PARTS = {
    "shoulder": ("upper_arm",),
    "elbow": ("upper_arm", "forearm"),
    "wrist": ("forearm", "hand"),
    "hip": ("thigh",),
    "knee": ("thigh", "shin"),
    "ankle": ("shin", "foot"),
}
TORSO_JOINTS = ("shoulder", "hip")


def body_parts(proj: Projected, prop: Proportions, look: Appearance) -> list[Part]:
    """The parts of one person, sorted far to near."""
    s, lw = proj.scale, proj.scale * prop.limb_width
    xy, z = proj.xy, proj.depth
    parts: list[Part] = []

    def depth_shade(d: float) -> float:
        # Far limbs a little darker: a depth cue that helps tell left from right.
        return 1.0 + float(np.clip(d / max(prop.shoulder_half, 1e-3), -1, 1)) * 0.12

    for side in SIDES:
        limbs = (
            ("upper_arm", "shoulder", "elbow", 0.030, 0.025, "sleeve"),
            ("forearm", "elbow", "wrist", 0.025, 0.019, "forearm"),
            ("thigh", "hip", "knee", 0.052, 0.038, "pants"),
            ("shin", "knee", "ankle", 0.036, 0.026, "shin"),
            ("foot", "ankle", "toe", 0.022, 0.017, "shoes"),
        )
        for part, j0, j1, w0, w1, cloth in limbs:
            a, b = xy[f"{side}_{j0}"], xy[f"{side}_{j1}"]
            d = (z[f"{side}_{j0}"] + z[f"{side}_{j1}"]) / 2 + 0.01
            fill, tex = _cloth(cloth, look)
            parts.append(
                Part(
                    f"{side}_{part}",
                    ("capsule", a, b, w0 * lw, w1 * lw),
                    d,
                    _shade(fill, depth_shade(d)),
                    tex,
                )
            )
        hand = xy[f"{side}_hand"]
        d_hand = z[f"{side}_hand"] + 0.01
        parts.append(
            Part(f"{side}_hand", ("disk", hand, 0.024 * lw), d_hand, _shade(look.skin, 1.0))
        )

    # Torso: a tapered slab along the spine whose width includes the chest depth, so it has
    # a body in side views too.
    shoulder_half = np.hypot(*(xy["left_shoulder"] - xy["right_shoulder"])) / 2
    hip_half = np.hypot(*(xy["left_hip"] - xy["right_hip"])) / 2
    top_w = max(shoulder_half, prop.chest_depth_half * s) + 0.022 * s
    bottom_w = max(hip_half, prop.chest_depth_half * 0.9 * s) + 0.03 * s
    spine_dir = xy["neck"] - xy["pelvis"]
    pelvis_low = xy["pelvis"] - spine_dir * 0.08
    torso_depth = float(np.mean([z[f"{sd}_{j}"] for sd in SIDES for j in TORSO_JOINTS]))
    parts.append(
        Part(
            "torso",
            ("capsule", xy["neck"] - spine_dir * 0.05, pelvis_low, top_w, bottom_w),
            torso_depth,
            look.shirt,
            look.shirt_texture,
        )
    )
    parts.append(
        Part(
            "hips",
            ("capsule", xy["left_hip"], xy["right_hip"], 0.05 * lw, 0.05 * lw),
            torso_depth - 0.001,
            look.pants,
            look.pants_texture,
        )
    )
    parts.append(
        Part(
            "neck",
            ("capsule", xy["neck"], xy["head"], 0.028 * s, 0.028 * s),
            torso_depth - 0.002,
            look.skin,
        )
    )
    # The head sits on the neck: the torso never covers it, whatever the lean.
    head_depth = max(z["head"], torso_depth + 0.001)
    parts.append(Part("head", ("disk", xy["head"], prop.head_radius * s), head_depth, look.skin))
    parts.sort(key=lambda p: p.depth)
    return parts


def _cloth(kind: str, look: Appearance) -> tuple[Color, Image.Image | None]:
    if kind == "sleeve":
        return look.shirt, look.shirt_texture
    if kind == "forearm":
        return (look.skin, None) if look.short_sleeves else (look.shirt, look.shirt_texture)
    if kind == "pants":
        return look.pants, look.pants_texture
    if kind == "shin":
        return (look.skin, None) if look.shorts else (look.pants, look.pants_texture)
    return look.shoes, None


def draw_person(
    canvas: Canvas,
    proj: Projected,
    prop: Proportions,
    look: Appearance,
    label_base: int,
    silhouette: Image.Image,
) -> dict[str, int]:
    """Draw one person; returns the label value of each of its parts."""
    labels: dict[str, int] = {}
    for i, part in enumerate(body_parts(proj, prop, look)):
        labels[part.name] = label_base + i
        if part.name == "head":
            _draw_head(canvas, proj, prop, look, label_base + i, silhouette)
            continue
        if part.shape[0] == "capsule":
            fn, bounds = _capsule_fn(*part.shape[1:])
        else:
            fn, bounds = _disk_fn(*part.shape[1:])
        canvas.draw_mask(fn, bounds, part.fill, part.texture, label_base + i, silhouette)
    return labels


def _draw_head(
    canvas: Canvas,
    proj: Projected,
    prop: Proportions,
    look: Appearance,
    label: int,
    silhouette: Image.Image,
) -> None:
    """Head disk, hair, and face cues (eyes, nose, mouth, ears) that give away the facing."""
    s = proj.scale
    r = prop.head_radius * s
    c = proj.xy["head"]
    facing = proj.face_toward_camera  # > 0: the face is toward the camera
    fwd = proj.face_forward_xy
    up = proj.up_xy
    hair_shift = -0.35 * r * fwd + 0.22 * r * up

    def disk(center: np.ndarray, radius: float, color: Color, sil: Image.Image | None = None):
        fn, bounds = _disk_fn(center, radius)
        canvas.draw_mask(fn, bounds, color, None, label, sil)

    if facing >= -0.2 and not look.bald:
        disk(c + hair_shift, r * 0.98, look.hair, silhouette)
    disk(c, r, look.skin, silhouette)
    if facing < -0.2 and not look.bald:
        disk(c + hair_shift * 0.3, r * 0.97, look.hair)

    z_head = proj.depth["head"]
    rel = {k: (proj.depth[k] - z_head) / max(prop.head_radius, 1e-6) for k in FACE_KEYPOINTS}
    for side in SIDES:
        ear = f"{side}_ear"
        if rel[ear] > face_threshold(ear):
            disk(proj.xy[ear], 0.2 * r, _shade(look.skin, 0.85))
    for side in SIDES:
        eye = f"{side}_eye"
        if rel[eye] > face_threshold(eye):
            disk(proj.xy[eye], 0.16 * r, (245, 245, 240))
            disk(proj.xy[eye] + 0.05 * r * fwd, 0.09 * r, (25, 20, 20))
    if rel["nose"] > face_threshold("nose"):
        disk(proj.xy["nose"], 0.15 * r, _shade(look.skin, 0.78))
    if facing > 0.3:
        mouth = c + r * (0.55 * fwd - 0.55 * up)
        disk(mouth, 0.12 * r, (150, 50, 60))
