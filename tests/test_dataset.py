"""The COCO reader: crops, augmentation, targets, and evaluation through them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.data.coco import AugmentConfig, CocoPoseDataset, locate_split
from compress.errors import DataError
from compress.pose.decode import decode_heatmaps
from compress.pose.metrics import evaluate, evaluate_ground_truth, predict_keypoints
from compress.pose.spec import PoseSpec

FLIP_ONLY = AugmentConfig(
    flip_probability=1.0,
    scale_range=(1.0, 1.0),
    rotation_probability=0.0,
    half_body_probability=0.0,
    color_jitter=0.0,
)


def _one_person_folder(tmp_path: Path, spec: PoseSpec, keypoints: np.ndarray) -> Path:
    root = tmp_path / "one"
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(root / "images" / "val" / "1.jpg")
    ann = {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [40.0, 20.0, 120.0, 160.0],
        "area": 12000.0,
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "keypoints": [float(v) for v in keypoints.reshape(-1)],
    }
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 200, "height": 200}],
        "annotations": [ann],
        "categories": [spec.to_coco_category()],
    }
    (root / "annotations" / "person_keypoints_val.json").write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("pair", range(8))
def test_flip_keeps_each_flip_pair_right(tmp_path: Path, spec: PoseSpec, pair: int) -> None:
    left, right = spec.flip_pairs[pair]
    il, ir = spec.index(left), spec.index(right)
    kps = np.zeros((17, 3))
    kps[il] = (70.0, 60.0, 2)  # the left joint on the image's left, higher
    kps[ir] = (130.0, 140.0, 2)
    root = _one_person_folder(tmp_path, spec, kps)
    plain = CocoPoseDataset.from_folder(root, "val", spec)[0]
    flipped = CocoPoseDataset.from_folder(root, "val", spec, augment=FLIP_ONLY)[0]
    coords_plain, _ = decode_heatmaps(plain["heatmaps"].numpy()[None])
    coords_flip, _ = decode_heatmaps(flipped["heatmaps"].numpy()[None])
    width = spec.heatmap_size[1]
    # After a mirror, the channel named `right` holds the mirrored position of the left joint.
    expected_right = (width - coords_plain[0, il, 0], coords_plain[0, il, 1])
    expected_left = (width - coords_plain[0, ir, 0], coords_plain[0, ir, 1])
    assert coords_flip[0, ir] == pytest.approx(expected_right, abs=1e-3)
    assert coords_flip[0, il] == pytest.approx(expected_left, abs=1e-3)
    assert flipped["weights"][il] == 1 and flipped["weights"][ir] == 1
    others = [i for i in range(17) if i not in (il, ir)]
    assert flipped["weights"][others].sum() == 0


def test_flipped_crop_content_sits_on_the_renamed_heatmap_peak(
    tmp_path: Path, spec: PoseSpec
) -> None:
    """Pixels, not just matrices: a bright spot at the left wrist ends up, after a flip, exactly
    where the right-wrist heatmap peaks, and maps back to where it was in the image."""
    kps = np.zeros((17, 3))
    kps[spec.index("left_wrist")] = (75.0, 90.0, 2)  # COCO pixel index: centre of pixel (75, 90)
    root = _one_person_folder(tmp_path, spec, kps)
    image = np.full((200, 200, 3), 90, np.uint8)
    image[88:93, 73:78] = 255  # a 5x5 spot centred on pixel (75, 90)
    Image.fromarray(image).save(root / "images" / "val" / "1.jpg", quality=100)
    item = CocoPoseDataset.from_folder(root, "val", spec, augment=FLIP_ONLY)[0]
    assert item["flipped"]
    crop = item["image"].numpy().transpose(1, 2, 0) * np.asarray(spec.normalization.std)
    crop = crop + np.asarray(spec.normalization.mean)
    weight = np.clip(crop.mean(axis=-1) - 150, 0, None)
    ys, xs = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    spot = np.array([(weight * (xs + 0.5)).sum(), (weight * (ys + 0.5)).sum()]) / weight.sum()
    coords, _ = decode_heatmaps(item["heatmaps"].numpy()[None])
    peak = coords[0, spec.index("right_wrist")] * spec.heatmap_stride
    assert peak == pytest.approx(spot, abs=0.3)
    back = item["crop_to_image"].numpy() @ np.append(peak, 1.0)
    assert back[:2] == pytest.approx([75.5, 90.5], abs=0.1)  # continuous centre of pixel (75, 90)


def test_training_samples_have_the_network_shapes(synthetic_root: Path, spec: PoseSpec) -> None:
    ds = CocoPoseDataset.from_folder(synthetic_root, "train", spec, augment=AugmentConfig())
    item = ds[0]
    assert item["image"].shape == (3, 256, 192) and item["image"].dtype == torch.float32
    assert item["heatmaps"].shape == (17, 64, 48)
    assert item["weights"].shape == (17,)
    # Augmentation is reproducible per (seed, epoch, index) and changes with the epoch.
    again = ds[0]["image"]
    ds.set_epoch(1)
    assert torch.equal(item["image"], again)
    assert not torch.equal(item["image"], ds[0]["image"])
    # Normalised with the spec's mean/std: roughly zero-centred.
    assert -3 < float(item["image"].mean()) < 3


def test_ground_truth_through_encode_decode_scores_ap_above_099(
    synthetic_root: Path, spec: PoseSpec
) -> None:
    ds = CocoPoseDataset.from_folder(synthetic_root, "val", spec)
    metrics = evaluate_ground_truth(ds)
    assert metrics.num_people > 100
    assert metrics.ap >= 0.99
    assert metrics.pck >= 0.99 and metrics.pcp >= 0.99
    # AP tolerates a 0.5 px shift; the encode-decode path must be far tighter than that.
    predictions = predict_keypoints(ds, lambda batch: batch["heatmaps"])
    labelled = predictions.ground_truth[..., 2] > 0
    error = np.linalg.norm(predictions.keypoints - predictions.ground_truth[..., :2], axis=-1)
    assert error[labelled].max() < 0.01


def test_evaluation_refuses_an_augmented_dataset(synthetic_root: Path, spec: PoseSpec) -> None:
    ds = CocoPoseDataset.from_folder(synthetic_root, "val", spec, augment=FLIP_ONLY)
    with pytest.raises(ValueError, match="without augmentation"):
        evaluate_ground_truth(ds)


def test_person_category_id_is_carried_to_cocoeval(tmp_path: Path, spec: PoseSpec) -> None:
    kps = np.zeros((17, 3))
    kps[:, :2] = np.stack([np.linspace(60, 140, 17), np.linspace(40, 170, 17)], axis=1)
    kps[:, 2] = 2
    root = _one_person_folder(tmp_path, spec, kps)
    ann_file = root / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    data["categories"][0]["id"] = 0
    data["annotations"][0]["category_id"] = 0
    data["categories"].append({"id": 5, "name": "dog", "supercategory": "animal"})
    ann_file.write_text(json.dumps(data))
    metrics = evaluate_ground_truth(CocoPoseDataset.from_folder(root, "val", spec))
    assert metrics.ap == pytest.approx(1.0)


def test_evaluate_runs_any_predict_function(synthetic_root: Path, spec: PoseSpec) -> None:
    ds = CocoPoseDataset.from_folder(synthetic_root, "val", spec)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AvgPool2d(4), torch.nn.Conv2d(3, 17, 3, padding=1))
    with torch.no_grad():
        plain = evaluate(net, ds, batch_size=64)
        flipped = evaluate(net, ds, batch_size=64, flip_test=True)
    for m in (plain, flipped):
        assert 0.0 <= m.ap < 0.2  # an untrained net is poor, but it is scored
        assert 0.0 <= m.pck <= 1.0
    with pytest.raises(DataError, match="model output has shape"):
        evaluate(lambda x: torch.zeros(len(x), 5, 64, 48), ds)


def test_locate_split_accepts_coco_layout(tmp_path: Path, synthetic_root: Path) -> None:
    coco_style = tmp_path / "coco"
    (coco_style / "annotations").mkdir(parents=True)
    shutil.copy(
        synthetic_root / "annotations" / "person_keypoints_val.json",
        coco_style / "annotations" / "person_keypoints_val2017.json",
    )
    shutil.copytree(synthetic_root / "images" / "val", coco_style / "val2017")
    split = locate_split(coco_style, "val2017")
    assert split.image_dir == coco_style / "val2017"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no-json", "annotation file for split 'val' not found"),
        ("bad-json", "not valid JSON (line 1"),
        ("no-images-key", "missing the COCO list 'images'"),
        ("wrong-count", "has 5 keypoints, the pose spec 'coco17' has 17"),
        ("short-keypoints", "annotation 1: expected 51 keypoint values, got 6"),
        ("reordered", "keypoint 0 is 'right_ankle', the pose spec 'coco17' expects 'nose'"),
        ("no-area", "annotation 1 has no 'area'"),
        ("bad-bbox", "annotation 1: bbox must be 4 numbers [x, y, w, h], got [1, 2]"),
        ("text-keypoints", "annotation 1: keypoints must be a flat list of finite numbers"),
        ("two-categories", "expected one category with keypoints, found 2"),
    ],
)
def test_broken_datasets_name_the_problem(
    tmp_path: Path, spec: PoseSpec, breakage: str, message: str
) -> None:
    kps = np.zeros((17, 3))
    kps[0] = (100, 100, 2)
    root = _one_person_folder(tmp_path, spec, kps)
    ann_file = root / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    if breakage == "no-json":
        ann_file.unlink()
    elif breakage == "bad-json":
        ann_file.write_text("{not json")
    elif breakage == "no-images-key":
        del data["images"]
        ann_file.write_text(json.dumps(data))
    elif breakage == "wrong-count":
        data["categories"][0]["keypoints"] = ["a", "b", "c", "d", "e"]
        ann_file.write_text(json.dumps(data))
    elif breakage == "short-keypoints":
        data["annotations"][0]["keypoints"] = [1, 2, 2, 3, 4, 2]
        ann_file.write_text(json.dumps(data))
    elif breakage == "reordered":
        data["categories"][0]["keypoints"] = data["categories"][0]["keypoints"][::-1]
        ann_file.write_text(json.dumps(data))
    elif breakage == "no-area":
        del data["annotations"][0]["area"]
        ann_file.write_text(json.dumps(data))
    elif breakage == "bad-bbox":
        data["annotations"][0]["bbox"] = [1, 2]
        ann_file.write_text(json.dumps(data))
    elif breakage == "text-keypoints":
        data["annotations"][0]["keypoints"] = ["a"] * 51
        ann_file.write_text(json.dumps(data))
    elif breakage == "two-categories":
        data["categories"].append({**data["categories"][0], "id": 2, "name": "robot"})
        ann_file.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")
    ):
        CocoPoseDataset.from_folder(root, "val", spec)


def test_missing_image_is_named(tmp_path: Path, spec: PoseSpec) -> None:
    kps = np.zeros((17, 3))
    kps[0] = (100, 100, 2)
    root = _one_person_folder(tmp_path, spec, kps)
    (root / "images" / "val" / "1.jpg").unlink()
    with pytest.raises(DataError, match=r"annotation 1: image file not found: .*1\.jpg"):
        CocoPoseDataset.from_folder(root, "val", spec)


def _folder_with_bad_samples(tmp_path: Path, spec: PoseSpec) -> Path:
    """Seven people on seven images: two good, five bad in five different ways, and one more
    image with nobody on it (not a bad sample)."""
    kps = np.zeros((17, 3))
    kps[0] = (100, 100, 2)
    root = _one_person_folder(tmp_path, spec, kps)
    ann_file = root / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    images = root / "images" / "val"
    good = data["annotations"][0]
    for i in range(2, 9):
        Image.new("RGB", (200, 200), (90, 90, 90)).save(images / f"{i}.jpg")
        data["images"].append({"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200})
        if i < 8:
            data["annotations"].append({**good, "id": i, "image_id": i})
    anns = {a["id"]: a for a in data["annotations"]}
    anns[3]["bbox"] = [10.0, 10.0, 0.0, 50.0]  # no area
    anns[4]["bbox"] = [250.0, 10.0, 40.0, 50.0]  # right of the 200x200 image
    anns[5]["keypoints"] = anns[5]["keypoints"][:30]  # ten keypoints, not 17
    (images / "6.jpg").unlink()  # missing file
    (images / "7.jpg").write_bytes((images / "1.jpg").read_bytes()[:300])  # truncated JPEG
    ann_file.write_text(json.dumps(data))
    return root


def test_bad_samples_are_all_listed_under_the_error_policy(tmp_path: Path, spec: PoseSpec) -> None:
    root = _folder_with_bad_samples(tmp_path, spec)
    with pytest.raises(DataError) as caught:
        CocoPoseDataset.from_folder(root, "val", spec)
    message = str(caught.value)
    # The error policy checks files by existence; a truncated file is named when first read.
    assert "person_keypoints_val.json: 4 bad samples:" in message
    assert "annotation 3: bbox [10.0, 10.0, 0.0, 50.0] has no area" in message
    assert "annotation 4: bbox [250.0, 10.0, 40.0, 50.0] lies outside the 200x200 image" in message
    assert "annotation 5: expected 51 keypoint values, got 30" in message
    assert "annotation 6: image file not found" in message
    assert "set data.on_bad_sample: skip" in message


def test_skip_policy_leaves_bad_samples_out_and_says_so(tmp_path: Path, spec: PoseSpec) -> None:
    root = _folder_with_bad_samples(tmp_path, spec)
    ds = CocoPoseDataset.from_folder(root, "val", spec, on_bad_sample="skip")
    assert [s.annotation_id for s in ds.samples] == [1, 2]
    assert len(ds.bad_samples) == 5
    assert "annotation 7: cannot decode image" in ds.bad_samples[-1]
    summary = ds.bad_sample_summary()
    assert "left out 5 bad samples (on_bad_sample: skip), first: annotation 3" in summary
    assert all(ds[i]["image"].shape == (3, *spec.input_size) for i in range(len(ds)))


def test_a_truncated_image_is_named_when_read_under_the_error_policy(
    tmp_path: Path, spec: PoseSpec
) -> None:
    kps = np.zeros((17, 3))
    kps[0] = (100, 100, 2)
    root = _one_person_folder(tmp_path, spec, kps)
    image = root / "images" / "val" / "1.jpg"
    image.write_bytes(image.read_bytes()[:300])
    ds = CocoPoseDataset.from_folder(root, "val", spec)
    with pytest.raises(DataError, match=r"1\.jpg: cannot decode image"):
        ds[0]


def test_a_split_with_nobody_usable_is_an_error(tmp_path: Path, spec: PoseSpec) -> None:
    kps = np.zeros((17, 3))
    kps[0] = (100, 100, 2)
    root = _one_person_folder(tmp_path, spec, kps)
    ann_file = root / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["bbox"] = [0, 0, 0, 0]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"no usable annotated people \(1 bad sample left out\)"):
        CocoPoseDataset.from_folder(root, "val", spec, on_bad_sample="skip")
    data["annotations"] = []
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"val\.json: no usable annotated people$"):
        CocoPoseDataset.from_folder(root, "val", spec)
