"""The synthetic generator: format, determinism, visibility flags and variety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import compress.data.synth as synth
from compress.data.coco import load_coco
from compress.data.synth import Occluder, PersonSpec, SceneConfig, generate_dataset, render_scene
from compress.data.synth.body import sample_pose
from compress.errors import DataError, OutputError
from compress.pose.spec import PoseSpec

CFG = SceneConfig(effects=False)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", {"train": 20, "val": 6}, seed=3, workers=1)
    generate_dataset(tmp_path / "b", {"train": 20, "val": 6}, seed=3, workers=2)
    generate_dataset(tmp_path / "c", {"train": 20, "val": 6}, seed=4, workers=1)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert len(a) == 20 + 6 + 2
    assert a == b
    assert a != c


def test_output_is_coco_keypoint_format(synthetic_root: Path, spec: PoseSpec) -> None:
    ann_file = synthetic_root / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    coco = load_coco(ann_file)
    assert data["categories"] == [spec.to_coco_category()]
    assert len(coco.getImgIds()) == 80
    for img in data["images"]:
        assert (synthetic_root / "images" / "val" / img["file_name"]).is_file()
    for ann in data["annotations"]:
        assert set(ann) >= {
            "id",
            "image_id",
            "category_id",
            "bbox",
            "area",
            "iscrowd",
            "num_keypoints",
            "keypoints",
        }
        kps = np.asarray(ann["keypoints"]).reshape(17, 3)
        assert set(np.unique(kps[:, 2])) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256
        assert 0 < ann["area"] <= w * h
        labelled = kps[kps[:, 2] > 0]
        # COCO pixel indices: a point inside the image lies in [-0.5, 255.5).
        assert ((labelled[:, :2] >= -0.5) & (labelled[:, :2] < 255.5)).all()
        assert (kps[kps[:, 2] == 0, :2] == 0).all()


def test_variety_of_the_data(synthetic_root: Path) -> None:
    data = json.loads((synthetic_root / "annotations" / "person_keypoints_val.json").read_text())
    per_image = np.bincount([a["image_id"] for a in data["annotations"]])
    counts = per_image[per_image > 0]
    assert counts.min() >= 1 and counts.max() >= 3 and (counts >= 2).mean() > 0.25
    flags = np.concatenate([np.asarray(a["keypoints"])[2::3] for a in data["annotations"]])
    assert (flags == 1).mean() > 0.03  # hidden but labelled joints
    assert (flags == 0).mean() > 0.03  # outside the image or the face turned away
    assert (flags == 2).mean() > 0.5
    # The size of fully-labelled people varies at least 4x.
    sizes = [max(a["bbox"][2:]) for a in data["annotations"] if a["num_keypoints"] == 17]
    assert max(sizes) / min(sizes) >= 4


def _person(
    rng: np.random.Generator, family: str = "standing", yaw: float = 0.0, **kw
) -> PersonSpec:
    pose = sample_pose(rng, family)
    return PersonSpec(
        pose=pose,
        yaw=yaw,
        height_px=kw.get("height", 200.0),
        anchor=kw.get("anchor", (128.0, 128.0)),
    )


def _keypoints(scene, spec: PoseSpec) -> dict[str, tuple[float, float, int]]:
    kps = np.asarray(scene.annotations[0]["keypoints"]).reshape(17, 3)
    return {name: (kps[i, 0], kps[i, 1], int(kps[i, 2])) for i, name in enumerate(spec.keypoints)}


def test_an_occluder_over_a_joint_makes_it_hidden(spec: PoseSpec) -> None:
    person = _person(np.random.default_rng(0))
    clear = _keypoints(render_scene(np.random.default_rng(1), CFG, [person], occluders=[]), spec)
    assert clear["left_wrist"][2] == 2 and clear["right_ankle"][2] == 2
    x, y, _ = clear["left_wrist"]
    box = Occluder("rect", (x - 8, y - 8, x + 8, y + 8), color=(10, 200, 10))
    hidden = _keypoints(
        render_scene(np.random.default_rng(1), CFG, [person], occluders=[box]), spec
    )
    assert hidden["left_wrist"][2] == 1
    assert hidden["left_wrist"][:2] == clear["left_wrist"][:2]  # still labelled where it is
    assert hidden["right_ankle"][2] == 2


def test_joints_outside_the_image_are_unlabelled(spec: PoseSpec) -> None:
    # Pelvis near the bottom edge: the legs leave the image.
    person = _person(np.random.default_rng(0), anchor=(128.0, 240.0))
    kps = _keypoints(render_scene(np.random.default_rng(1), CFG, [person], occluders=[]), spec)
    for name in ("left_ankle", "right_ankle", "left_knee", "right_knee"):
        assert kps[name] == (0.0, 0.0, 0)
    assert kps["left_shoulder"][2] == 2


def test_left_and_right_follow_the_view(spec: PoseSpec) -> None:
    rng = np.random.default_rng(5)
    front = _keypoints(
        render_scene(rng, CFG, [_person(np.random.default_rng(2), yaw=0.0)], occluders=[]), spec
    )
    back = _keypoints(
        render_scene(rng, CFG, [_person(np.random.default_rng(2), yaw=180.0)], occluders=[]), spec
    )
    # Facing the camera, the person's left is on the image's right; from behind, the reverse.
    assert front["left_shoulder"][0] > front["right_shoulder"][0]
    assert back["left_shoulder"][0] < back["right_shoulder"][0]
    # The face shows from the front only: eyes visible in front, unlabelled from behind.
    assert front["left_eye"][2] == 2 and front["nose"][2] == 2
    assert back["left_eye"][2] == 0 and back["nose"][2] == 0
    assert back["left_ear"][2] == 2


def test_side_view_hides_the_far_hip_behind_the_body(spec: PoseSpec) -> None:
    # yaw +90: the person faces image right and shows the right side to the camera.
    scene = render_scene(
        np.random.default_rng(1), CFG, [_person(np.random.default_rng(3), yaw=90.0)], occluders=[]
    )
    kps = _keypoints(scene, spec)
    assert kps["left_hip"][2] == 1
    assert kps["right_hip"][2] == 2
    # Facing image right: the nose is right of the near (right) ear; the far ear is unlabelled.
    assert kps["right_ear"][2] == 2 and kps["left_ear"][2] == 0
    assert kps["nose"][0] > kps["right_ear"][0] + 5


def test_another_person_in_front_hides_joints(spec: PoseSpec) -> None:
    rng = np.random.default_rng(0)
    behind = _person(rng, height=120.0, anchor=(128.0, 128.0))
    front = _person(rng, height=230.0, anchor=(128.0, 128.0))
    scene = render_scene(np.random.default_rng(1), CFG, [behind, front], occluders=[])
    flags = np.asarray(scene.annotations[0]["keypoints"])[2::3]
    assert (flags == 1).sum() >= 5


@pytest.mark.parametrize(
    "family", ["standing", "walking", "running", "arms_raised", "sitting", "crouching", "lying"]
)
def test_every_pose_family_renders(family: str) -> None:
    rng = np.random.default_rng(11)
    scene = render_scene(
        rng, SceneConfig(), [_person(rng, family, yaw=float(rng.uniform(-180, 180)))], occluders=[]
    )
    assert len(scene.annotations) == 1
    assert scene.annotations[0]["num_keypoints"] >= 10


def test_a_failure_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = synth.render_scene

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_scene", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        generate_dataset(tmp_path / "out", {"train": 6}, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_dataset(out, {"val": 2}, workers=1)
    with pytest.raises(OutputError, match="already exists; pass --force"):
        generate_dataset(out, {"val": 2}, workers=1)
    (out / "stale.txt").write_text("old")
    generate_dataset(out, {"val": 3}, workers=1, force=True)
    assert not (out / "stale.txt").exists()  # replaced whole, never mixed
    assert len(list((out / "images" / "val").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_bad_arguments_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split names"):
        generate_dataset(tmp_path / "x", {"training": 2})
    with pytest.raises(DataError, match="at least 32x32"):
        generate_dataset(tmp_path / "x", {"val": 2}, image_size=(16, 16))
    assert not (tmp_path / "x").exists()


def test_drawn_parts_are_centred_on_their_points() -> None:
    """Rasterised disks and limbs carry no systematic offset from their coordinates."""
    from PIL import Image

    from compress.data.synth.render import Canvas, _capsule_fn, _disk_fn

    rng = np.random.default_rng(0)
    offsets = []
    for _ in range(200):
        canvas = Canvas(Image.new("RGB", (64, 64)))
        centre = rng.uniform(20, 44, size=2)
        if rng.random() < 0.5:
            fn, bounds = _disk_fn(centre, float(rng.uniform(2, 6)))
        else:
            d = rng.normal(size=2) * 6
            fn, bounds = _capsule_fn(centre - d, centre + d, 3.0, 3.0)
        canvas.draw_mask(fn, bounds, (255, 255, 255), None, 7)
        mask = np.asarray(canvas.label) == 7
        ys, xs = np.nonzero(mask)
        offsets.append([xs.mean() + 0.5 - centre[0], ys.mean() + 0.5 - centre[1]])
    offsets = np.asarray(offsets)
    assert np.abs(offsets.mean(axis=0)).max() < 0.08
    assert np.abs(offsets).max() < 0.75


@pytest.mark.parametrize("family", ["standing", "sitting", "crouching"])
def test_knees_fold_backwards_so_feet_stay_down(family: str) -> None:
    from compress.data.synth.body import Proportions, build_skeleton

    rng = np.random.default_rng(1)
    for _ in range(100):
        skel = build_skeleton(Proportions.sample(rng), sample_pose(rng, family))
        for side in ("left", "right"):
            assert skel.points[f"{side}_ankle"][1] < skel.points[f"{side}_knee"][1]


def test_elbows_fold_to_the_front_of_the_arm() -> None:
    from compress.data.synth.body import Pose, Proportions, build_skeleton

    prop = Proportions.sample(np.random.default_rng(0))
    down = Pose(
        "standing", shoulder_flex=[0.0, 0.0], shoulder_abduct=[0.0, 0.0], elbow_flex=[90.0, 90.0]
    )
    skel = build_skeleton(prop, down)
    assert skel.points["left_wrist"][2] - skel.points["left_elbow"][2] > 0.9 * prop.forearm
    up = Pose(
        "arms_raised",
        shoulder_flex=[180.0, 180.0],
        shoulder_abduct=[0.0, 0.0],
        elbow_flex=[90.0, 90.0],
    )
    skel = build_skeleton(prop, up)  # overhead, the forearm folds behind the head
    assert skel.points["left_wrist"][2] - skel.points["left_elbow"][2] < -0.9 * prop.forearm


def test_runs_started_together_generate_the_cached_data_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import compress.data.sources as sources

    calls = []

    def slow_generate(*args, **kwargs):
        calls.append(args[0])
        time.sleep(0.5)  # long enough for the other run to arrive while this one writes
        return generate_dataset(*args, **kwargs)

    monkeypatch.setenv("POCKET_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "generate_dataset", slow_generate)
    results = []
    runs = [
        threading.Thread(target=lambda: results.append(sources.synthetic_splits(2, 2, 5, 64)))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(calls) == 1
    assert results[0][1].annotation_file == results[1][1].annotation_file
    assert results[0][1].annotation_file.exists()
