"""A 3D kinematic body: proportions, pose families with joint-angle limits, and projection.

Body frame: x is the person's left, y is up, z is where the person faces; lengths are
fractions of body height. The camera looks down -z after the body is turned by the view's
yaw, so yaw 0 is a front view, 180 a back view and +-90 side views. Points are projected
orthographically; their camera depth orders the drawing and decides self-occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POSE_FAMILIES = ("standing", "walking", "running", "arms_raised", "sitting", "crouching", "lying")
POSE_WEIGHTS = (0.2, 0.18, 0.14, 0.14, 0.12, 0.12, 0.1)
VIEWS = ("front", "back", "side", "oblique")
VIEW_WEIGHTS = (0.32, 0.2, 0.3, 0.18)

# Joint limits in degrees, applied after the pose family's ranges and random jitter.
SHOULDER_FLEX = (-60.0, 185.0)
SHOULDER_ABDUCT = (0.0, 175.0)
ELBOW_FLEX = (0.0, 150.0)
HIP_FLEX = (-40.0, 140.0)
HIP_ABDUCT = (0.0, 45.0)
KNEE_FLEX = (0.0, 150.0)


@dataclass(frozen=True)
class Proportions:
    thigh: float
    shin: float
    torso: float
    neck: float
    head_radius: float
    shoulder_half: float
    hip_half: float
    chest_depth_half: float
    upper_arm: float
    forearm: float
    limb_width: float  # scales every limb's thickness

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Proportions:
        def jitter(value: float, spread: float = 0.08) -> float:
            return value * float(rng.uniform(1 - spread, 1 + spread))

        return cls(
            thigh=jitter(0.245),
            shin=jitter(0.235),
            torso=jitter(0.29),
            neck=jitter(0.085),
            head_radius=jitter(0.066, 0.12),
            shoulder_half=jitter(0.115, 0.15),
            hip_half=jitter(0.085, 0.15),
            chest_depth_half=jitter(0.06, 0.15),
            upper_arm=jitter(0.17),
            forearm=jitter(0.15),
            limb_width=jitter(1.0, 0.25),
        )


@dataclass
class Pose:
    """Joint angles in degrees. Left and right limbs are (left, right) pairs."""

    family: str
    shoulder_flex: list[float] = field(default_factory=lambda: [0.0, 0.0])
    shoulder_abduct: list[float] = field(default_factory=lambda: [10.0, 10.0])
    elbow_flex: list[float] = field(default_factory=lambda: [10.0, 10.0])
    hip_flex: list[float] = field(default_factory=lambda: [0.0, 0.0])
    hip_abduct: list[float] = field(default_factory=lambda: [4.0, 4.0])
    knee_flex: list[float] = field(default_factory=lambda: [3.0, 3.0])
    lean: float = 0.0  # torso pitch forward
    side_bend: float = 0.0
    twist: float = 0.0  # shoulders against hips, about the vertical axis
    head_yaw: float = 0.0
    head_pitch: float = 0.0
    roll: float = 0.0  # whole body in the image plane (lying people)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_pose(rng: np.random.Generator, family: str | None = None) -> Pose:
    """A pose of the given family (or a random one), within the joint limits."""
    if family is None:
        family = str(rng.choice(POSE_FAMILIES, p=POSE_WEIGHTS))
    p = Pose(family=family)
    for i in range(2):
        p.shoulder_flex[i] = _u(rng, -15, 20)
        p.shoulder_abduct[i] = _u(rng, 3, 25)
        p.elbow_flex[i] = _u(rng, 0, 35)
        p.hip_flex[i] = _u(rng, -6, 8)
        p.hip_abduct[i] = _u(rng, 0, 10)
        p.knee_flex[i] = _u(rng, 0, 10)
    p.lean = _u(rng, -5, 8)
    p.side_bend = _u(rng, -6, 6)
    p.head_yaw = _u(rng, -30, 30)
    p.head_pitch = _u(rng, -15, 15)

    if family in ("walking", "running"):
        running = family == "running"
        amp = _u(rng, 35, 65) if running else _u(rng, 15, 35)
        phase = np.sin(_u(rng, 0, 2 * np.pi))
        for i, sign in enumerate((1.0, -1.0)):
            swing = sign * amp * phase
            p.hip_flex[i] = swing
            p.knee_flex[i] = (
                _u(rng, 20, 110) if running else _u(rng, 0, 15) + max(0.0, -swing) * 1.2
            )
            p.shoulder_flex[i] = -swing * _u(rng, 0.6, 1.0)
            p.elbow_flex[i] = _u(rng, 70, 110) if running else _u(rng, 10, 45)
            p.shoulder_abduct[i] = _u(rng, 3, 20)
        p.lean = _u(rng, 5, 20) if running else _u(rng, 0, 8)
        p.twist = phase * amp * 0.2  # shoulders counter-rotate against the hips
    elif family == "arms_raised":
        for i in range(2):
            if rng.random() < 0.5:
                p.shoulder_flex[i], p.shoulder_abduct[i] = _u(rng, 140, 185), _u(rng, 0, 30)
            else:
                p.shoulder_flex[i], p.shoulder_abduct[i] = _u(rng, -10, 30), _u(rng, 90, 175)
            p.elbow_flex[i] = _u(rng, 0, 70)
        if rng.random() < 0.3:  # one arm down
            i = int(rng.integers(2))
            p.shoulder_flex[i], p.shoulder_abduct[i] = _u(rng, -10, 20), _u(rng, 3, 20)
    elif family == "sitting":
        for i in range(2):
            p.hip_flex[i] = _u(rng, 75, 100)
            p.knee_flex[i] = _u(rng, 65, 105)
            p.hip_abduct[i] = _u(rng, 0, 20)
            p.shoulder_flex[i] = _u(rng, 0, 60)
            p.elbow_flex[i] = _u(rng, 20, 100)
        p.lean = _u(rng, -10, 15)
    elif family == "crouching":
        for i in range(2):
            p.hip_flex[i] = _u(rng, 95, 135)
            p.knee_flex[i] = _u(rng, 100, 145)
            p.hip_abduct[i] = _u(rng, 5, 30)
            p.shoulder_flex[i] = _u(rng, 15, 80)
            p.elbow_flex[i] = _u(rng, 20, 100)
        p.lean = _u(rng, 20, 45)
    elif family == "lying":
        for i in range(2):
            p.shoulder_flex[i] = _u(rng, -20, 40)
            p.shoulder_abduct[i] = _u(rng, 5, 80)
            p.hip_flex[i] = _u(rng, -5, 35)
            p.knee_flex[i] = _u(rng, 0, 60)
        p.roll = float(rng.choice([-1, 1])) * _u(rng, 70, 105)

    # Jitter each joint a little, then clamp to the anatomical limits.
    for name, (lo, hi) in (
        ("shoulder_flex", SHOULDER_FLEX),
        ("shoulder_abduct", SHOULDER_ABDUCT),
        ("elbow_flex", ELBOW_FLEX),
        ("hip_flex", HIP_FLEX),
        ("hip_abduct", HIP_ABDUCT),
        ("knee_flex", KNEE_FLEX),
    ):
        values = getattr(p, name)
        for i in range(2):
            values[i] = float(np.clip(values[i] + rng.normal(0, 4), lo, hi))
    return p


def sample_view_yaw(rng: np.random.Generator) -> float:
    view = str(rng.choice(VIEWS, p=VIEW_WEIGHTS))
    if view == "front":
        return _u(rng, -20, 20)
    if view == "back":
        return 180 + _u(rng, -20, 20)
    if view == "side":
        return float(rng.choice([-90, 90])) + _u(rng, -15, 15)
    return float(rng.choice([-1, 1])) * _u(rng, 25, 65) + float(rng.choice([0, 180]))


def _limb_frame(flex_deg: float, abduct_deg: float, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Direction of a limb and its front (anterior) direction, both unit vectors.

    The limb hangs down with its front facing forward, is swung forward by ``flex`` (about
    the x axis) and then outward by ``abduct`` (about the z axis). Rotating the front with the
    limb keeps elbows and knees bending the anatomical way at any flexion.
    """
    f, a = np.radians(flex_deg), np.radians(side * abduct_deg)
    cf, sf, ca, sa = np.cos(f), np.sin(f), np.cos(a), np.sin(a)
    flex = np.array([[1.0, 0.0, 0.0], [0.0, cf, sf], [0.0, -sf, cf]])
    abduct = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
    rotation = abduct @ flex
    return rotation @ np.array([0.0, -1.0, 0.0]), rotation @ np.array([0.0, 0.0, 1.0])


def _bend(
    direction: np.ndarray, toward: np.ndarray, angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate ``direction`` by ``angle`` toward the perpendicular unit vector ``toward``.

    Returns the new direction and the new ``toward`` (both turned by the same angle).
    """
    t = np.radians(angle_deg)
    return np.cos(t) * direction + np.sin(t) * toward, -np.sin(t) * direction + np.cos(t) * toward


@dataclass(frozen=True)
class Skeleton3D:
    """Named 3D points of one body (body frame), plus the head's facing direction."""

    points: dict[str, np.ndarray]
    face_forward: np.ndarray
    face_left: np.ndarray
    up: np.ndarray


def build_skeleton(prop: Proportions, pose: Pose) -> Skeleton3D:
    """Forward kinematics from the pelvis (origin) outwards."""
    lean, bend = np.radians(pose.lean), np.radians(pose.side_bend)
    spine = np.array([np.sin(bend), np.cos(bend) * np.cos(lean), np.cos(bend) * np.sin(lean)])
    twist = np.radians(pose.twist)
    shoulder_axis = np.array([np.cos(twist), 0.0, -np.sin(twist)])

    pts: dict[str, np.ndarray] = {}
    pelvis = np.zeros(3)
    neck = pelvis + prop.torso * spine
    pts["pelvis"], pts["neck"] = pelvis, neck
    for side_name, side in (("left", 1.0), ("right", -1.0)):
        i = 0 if side > 0 else 1
        shoulder = neck + side * prop.shoulder_half * shoulder_axis - 0.02 * spine
        upper, arm_front = _limb_frame(pose.shoulder_flex[i], pose.shoulder_abduct[i], side)
        elbow = shoulder + prop.upper_arm * upper
        fore, _ = _bend(upper, arm_front, pose.elbow_flex[i])  # elbows fold to the front
        wrist = elbow + prop.forearm * fore
        hip = pelvis + np.array([side * prop.hip_half, 0.0, 0.0])
        thigh, leg_front = _limb_frame(pose.hip_flex[i], pose.hip_abduct[i], side)
        knee = hip + prop.thigh * thigh
        shin, shin_back = _bend(thigh, -leg_front, pose.knee_flex[i])  # knees fold to the back
        ankle = knee + prop.shin * shin
        foot_dir = -shin_back
        pts.update(
            {
                f"{side_name}_shoulder": shoulder,
                f"{side_name}_elbow": elbow,
                f"{side_name}_wrist": wrist,
                f"{side_name}_hand": wrist + 0.045 * fore,
                f"{side_name}_hip": hip,
                f"{side_name}_knee": knee,
                f"{side_name}_ankle": ankle,
                f"{side_name}_toe": ankle + 0.075 * foot_dir - 0.01 * shin,
            }
        )

    # Head: yaw and pitch relative to the torso.
    yaw, pitch = np.radians(pose.head_yaw), np.radians(pose.head_pitch)
    face_fwd = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    face_left = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    face_up = np.cross(face_fwd, face_left)
    r = prop.head_radius
    head = neck + (prop.neck + r * 0.6) * spine
    pts["head"] = head
    pts["nose"] = head + r * (1.02 * face_fwd - 0.15 * face_up)
    for side_name, side in (("left", 1.0), ("right", -1.0)):
        pts[f"{side_name}_eye"] = head + r * (
            0.78 * face_fwd + 0.36 * side * face_left + 0.18 * face_up
        )
        pts[f"{side_name}_ear"] = head + r * (-0.05 * face_fwd + 0.97 * side * face_left)
    return Skeleton3D(points=pts, face_forward=face_fwd, face_left=face_left, up=face_up)


@dataclass(frozen=True)
class Projected:
    """A skeleton in image space: 2D points (corner pixel coordinates) and camera depths."""

    xy: dict[str, np.ndarray]
    depth: dict[str, float]
    scale: float  # pixels per body height
    face_toward_camera: float  # z of the face direction in camera space, -1..1
    face_forward_xy: np.ndarray  # face direction projected to the image (unnormalised)
    up_xy: np.ndarray  # body up projected to the image


def project(
    skel: Skeleton3D, yaw_deg: float, roll_deg: float, scale: float, anchor: np.ndarray
) -> Projected:
    """Turn by ``yaw``, project orthographically, roll in the image plane, scale, translate.

    ``anchor`` is where the pelvis lands, in pixels.
    """
    yaw, roll = np.radians(yaw_deg), np.radians(roll_deg)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rot = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    cr, sr = np.cos(roll), np.sin(roll)
    roll_m = np.array([[cr, -sr], [sr, cr]])

    def to_image(v: np.ndarray, translate: bool = True) -> tuple[np.ndarray, float]:
        c = rot @ v
        xy = roll_m @ np.array([c[0], -c[1]]) * scale
        return (xy + anchor if translate else xy), float(c[2])

    xy, depth = {}, {}
    for name, p in skel.points.items():
        xy[name], depth[name] = to_image(p)
    face_xy, face_z = to_image(skel.face_forward, translate=False)
    up_xy, _ = to_image(np.array([0.0, 1.0, 0.0]), translate=False)
    return Projected(xy, depth, scale, face_z, face_xy / scale, up_xy / scale)
