"""Top-down person samples from any COCO keypoint folder, synthetic or real.

One sample is one annotated person: the image crop around its box (expanded to the network's
aspect ratio and padded), Gaussian heatmap targets with per-joint weights, and the matrix that
maps crop coordinates back to the image, so predictions can be scored in image space.

COCO files store keypoints as pixel indices (the centre of pixel i is at i); inside pocket
coordinates are continuous with pixel i covering [i, i+1). Reading adds 0.5 and writing
results subtracts it (``PIXEL_CENTER``), the convention Detectron2 uses too.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from compress.data.targets import encode_heatmaps
from compress.data.transforms import (
    CropBox,
    apply_matrix,
    box_from_bbox,
    crop_matrix,
    flip_keypoints_order,
    warp_image,
)
from compress.errors import DataError
from compress.pose.spec import PoseSpec

PIXEL_CENTER = 0.5


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation; the defaults follow common top-down practice (MMPose, HRNet)."""

    flip_probability: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.25)
    rotation_degrees: float = 30.0
    rotation_probability: float = 0.6
    half_body_probability: float = 0.3
    half_body_min_joints: int = 8
    color_jitter: float = 0.3  # brightness, contrast and saturation factors in 1 +- this


@dataclass(frozen=True)
class PersonSample:
    image_path: Path
    image_id: int
    annotation_id: int
    bbox: tuple[float, float, float, float]
    keypoints: np.ndarray  # (K, 3): x, y, visibility


@dataclass(frozen=True)
class CocoSplit:
    annotation_file: Path
    image_dir: Path


def locate_split(root: Path, split: str) -> CocoSplit:
    """Find a split's annotation file and image folder under a COCO-style root.

    Accepts pocket's layout (``images/<split>/``) and COCO's own (``<split>/`` or
    ``images/<split>/`` next to ``annotations/person_keypoints_<split>.json``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    annotation = root / "annotations" / f"person_keypoints_{split}.json"
    if not annotation.is_file():
        found = sorted(p.name for p in (root / "annotations").glob("person_keypoints_*.json"))
        hint = f"; found {found}" if found else ""
        raise DataError(f"{annotation}: annotation file for split {split!r} not found{hint}")
    for candidate in (root / "images" / split, root / split):
        if candidate.is_dir():
            return CocoSplit(annotation, candidate)
    raise DataError(
        f"{root}: no image folder for split {split!r} (looked for images/{split}/ and {split}/)"
    )


def load_coco(annotation_file: Path) -> COCO:
    """Load an annotation file with pycocotools, turning its failures into DataError."""
    try:
        data = json.loads(Path(annotation_file).read_text())
    except OSError as exc:
        raise DataError(f"{annotation_file}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{annotation_file}: not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DataError(f"{annotation_file}: missing the COCO list {key!r}")
    _check_entries(annotation_file, data)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entries(source: Path, data: dict) -> None:
    """Reject entries pycocotools would trip over; fill ``num_keypoints`` when it is absent."""
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            raise DataError(f"{source}: images[{i}] needs an 'id' and a 'file_name'")
        if not _is_id(image.get("id")):
            raise DataError(
                f"{source}: images[{i}]: id must be an integer, got {image.get('id')!r}"
            )
        for key in ("width", "height"):
            if key in image and not (_is_id(image[key]) and image[key] > 0):
                raise DataError(
                    f"{source}: images[{i}]: {key} must be a positive integer, got {image[key]!r}"
                )
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")):
            raise DataError(f"{source}: categories[{i}] needs an integer 'id'")
        names = cat.get("keypoints")
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise DataError(f"{source}: categories[{i}]: keypoints must be a list of names")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{source}: annotations[{i}] is not a mapping")
        name = f"annotation {ann.get('id', f'[{i}]')!r}"
        for key in ("id", "image_id", "category_id", "bbox", "area"):
            if key not in ann:
                raise DataError(f"{source}: {name} has no {key!r}")
        for key in ("id", "image_id", "category_id"):
            if not _is_id(ann[key]):
                raise DataError(f"{source}: {name}: {key} must be an integer, got {ann[key]!r}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DataError(f"{source}: {name}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
        if not all(math.isfinite(v) for v in bbox):
            raise DataError(f"{source}: {name}: bbox holds a NaN or infinite value: {bbox!r}")
        if not _is_number(ann["area"]) or not math.isfinite(ann["area"]):
            raise DataError(f"{source}: {name}: area must be a finite number, got {ann['area']!r}")
        for key in ("iscrowd", "num_keypoints"):
            if key in ann and not _is_id(ann[key]):
                raise DataError(f"{source}: {name}: {key} must be an integer, got {ann[key]!r}")
        kps = ann.get("keypoints")
        if kps is not None:
            if not (
                isinstance(kps, list)
                and len(kps) % 3 == 0
                and all(_is_number(v) and math.isfinite(v) for v in kps)
            ):
                raise DataError(
                    f"{source}: {name}: keypoints must be a flat list of finite numbers x, y, v"
                )
            if "num_keypoints" not in ann:
                ann["num_keypoints"] = sum(1 for v in kps[2::3] if v > 0)


def keypoint_category(coco: COCO, spec: PoseSpec, source: Path) -> int:
    """The id of the one category with keypoints; its names must be the spec's, in order."""
    cats = [c for c in coco.dataset["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if len(cats) != 1:
        names = [c.get("name") for c in cats]
        raise DataError(
            f"{source}: expected one category with keypoints, found {len(cats)} {names}"
        )
    cat = cats[0]
    names = list(cat["keypoints"])
    if len(names) != spec.num_keypoints:
        raise DataError(
            f"{source}: category {cat.get('name')!r} has {len(names)} keypoints, "
            f"the pose spec {spec.name!r} has {spec.num_keypoints}"
        )
    for i, (have, want) in enumerate(zip(names, spec.keypoints, strict=True)):
        if have != want:
            raise DataError(
                f"{source}: category {cat.get('name')!r} keypoint {i} is {have!r}, "
                f"the pose spec {spec.name!r} expects {want!r} (same names, same order)"
            )
    return int(cat["id"])


class CocoPoseDataset(torch.utils.data.Dataset):
    """Person crops of one COCO split, for training (``augment``) or evaluation (no augment)."""

    def __init__(
        self,
        split: CocoSplit,
        spec: PoseSpec,
        augment: AugmentConfig | None = None,
        padding: float = 1.25,
        seed: int = 0,
        on_bad_sample: str = "error",
    ) -> None:
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.on_bad_sample = on_bad_sample
        self.bad_samples: list[str] = []
        self.split = split
        self.spec = spec
        self.augment = augment
        self.padding = padding
        self.seed = seed
        self.epoch = 0
        self.coco = load_coco(split.annotation_file)
        self.category_id = keypoint_category(self.coco, spec, split.annotation_file)
        self.samples = self._collect()

    @classmethod
    def from_folder(cls, root: Path, split: str, spec: PoseSpec, **kwargs) -> CocoPoseDataset:
        return cls(locate_split(root, split), spec, **kwargs)

    def _collect(self) -> list[PersonSample]:
        """Every usable person; bad ones are an error or left out, as ``on_bad_sample`` says."""
        source = self.split.annotation_file
        k = self.spec.num_keypoints
        samples: list[PersonSample] = []
        bad: list[str] = []
        images_ok: dict[int, str | None] = {}  # image id -> problem with its file, if any
        for ann in self.coco.dataset["annotations"]:
            if ann["category_id"] != self.category_id:
                continue
            if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) <= 0:
                continue
            name = f"annotation {ann.get('id')}"
            kps = ann.get("keypoints")
            image = self.coco.imgs.get(ann["image_id"])
            problem = None
            if not isinstance(kps, list) or len(kps) != 3 * k:
                got = len(kps) if isinstance(kps, list) else type(kps).__name__
                problem = f"expected {3 * k} keypoint values, got {got}"
            elif image is None:
                problem = f"names unknown image {ann['image_id']}"
            else:
                problem = _box_problem(ann["bbox"], image)
                if problem is None:
                    if image["id"] not in images_ok:
                        images_ok[image["id"]] = self._image_problem(image)
                    problem = images_ok[image["id"]]
            if problem is not None:
                bad.append(f"{name}: {problem}")
                continue
            x, y, w, h = ann["bbox"]
            keypoints = np.asarray(kps, dtype=np.float64).reshape(k, 3)
            keypoints[keypoints[:, 2] > 0, :2] += PIXEL_CENTER
            samples.append(
                PersonSample(
                    image_path=self.split.image_dir / image["file_name"],
                    image_id=int(ann["image_id"]),
                    annotation_id=int(ann["id"]),
                    bbox=(float(x), float(y), float(w), float(h)),
                    keypoints=keypoints,
                )
            )
        self.bad_samples = bad
        if bad and self.on_bad_sample == "error":
            raise DataError(
                f"{source}: {_count(bad)}: {'; '.join(bad[:5])}"
                f"{'; ...' if len(bad) > 5 else ''} "
                "(fix them, or set data.on_bad_sample: skip to leave them out)"
            )
        if not samples:
            raise DataError(
                f"{source}: no usable annotated people"
                + (f" ({_count(bad)} left out)" if bad else "")
            )
        return samples

    def _image_problem(self, image: dict) -> str | None:
        """Why an image file cannot be used, or None. Checked for every image only with the
        skip policy (the error policy names a broken file when it is first read)."""
        path = self.split.image_dir / image["file_name"]
        if not path.is_file():
            return f"image file not found: {path}"
        if self.on_bad_sample == "error":
            return None
        try:
            with Image.open(path) as im:
                im.load()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            return f"cannot decode image {path} ({exc})"
        return None

    def bad_sample_summary(self) -> str | None:
        """One line for the console when samples were left out, else None."""
        if not self.bad_samples:
            return None
        return (
            f"{self.split.annotation_file}: left out {_count(self.bad_samples)} "
            f"(on_bad_sample: skip), first: {'; '.join(self.bad_samples[:3])}"
        )

    def without_augment(self) -> CocoPoseDataset:
        """The same people as plain evaluation crops (calibration, measurements)."""
        view = copy.copy(self)
        view.augment = None
        return view

    def first_images(self, max_people: int) -> CocoPoseDataset:
        """The people of the first images, whole images only, up to ``max_people`` people
        (at least one image): scoring a subset never counts unseen people as misses."""
        keep: set[int] = set()
        count: dict[int, int] = {}
        for sample in self.samples:
            count[sample.image_id] = count.get(sample.image_id, 0) + 1
        total = 0
        for image_id, n in count.items():
            if keep and total + n > max_people:
                break
            keep.add(image_id)
            total += n
        view = copy.copy(self)
        view.samples = [s for s in self.samples if s.image_id in keep]
        return view

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (a different draw per epoch, reproducible)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, sample: PersonSample) -> Image.Image:
        try:
            with Image.open(sample.image_path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"{sample.image_path}: image file not found") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{sample.image_path}: cannot decode image ({exc})") from None

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self.samples)
        sample = self.samples[index]
        spec = self.spec
        height, width = spec.input_size
        box = box_from_bbox(sample.bbox, width / height, self.padding)
        keypoints = sample.keypoints[:, :2]
        visibility = sample.keypoints[:, 2].copy()
        flip = False
        rng = None
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            box, flip = self._random_box(rng, box, sample.keypoints)

        matrix = crop_matrix(box, (width, height), flip=flip)
        crop = np.asarray(warp_image(self.load_image(sample), matrix, (width, height)), np.float32)
        if rng is not None and self.augment.color_jitter > 0:
            crop = _color_jitter(rng, crop, self.augment.color_jitter)

        crop_points = apply_matrix(matrix, keypoints)
        if flip:
            crop_points = flip_keypoints_order(crop_points, spec.flip_permutation)
            visibility = visibility[list(spec.flip_permutation)]
        heatmaps, weights = encode_heatmaps(
            crop_points / spec.heatmap_stride, visibility, spec.heatmap_size, spec.heatmap_sigma
        )
        norm = spec.normalization
        if norm.color_order == "BGR":
            crop = crop[..., ::-1]
        image = (crop - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "heatmaps": torch.from_numpy(heatmaps),
            "weights": torch.from_numpy(weights),
            "crop_to_image": torch.from_numpy(np.linalg.inv(matrix)),
            "keypoints": torch.from_numpy(sample.keypoints),
            "bbox": torch.tensor(sample.bbox, dtype=torch.float64),
            "image_id": sample.image_id,
            "annotation_id": sample.annotation_id,
            "flipped": flip,
        }

    def _random_box(
        self, rng: np.random.Generator, box: CropBox, keypoints: np.ndarray
    ) -> tuple[CropBox, bool]:
        aug = self.augment
        spec = self.spec
        height, width = spec.input_size
        labelled = keypoints[:, 2] > 0
        if (
            spec.upper_body
            and labelled.sum() > aug.half_body_min_joints
            and rng.random() < aug.half_body_probability
        ):
            upper = np.zeros(len(labelled), bool)
            upper[list(spec.upper_body_indices)] = True
            part = upper if rng.random() < 0.5 else ~upper
            chosen = keypoints[labelled & part, :2]
            if len(chosen) < 2:
                chosen = keypoints[labelled & ~part, :2]
            if len(chosen) >= 2:
                lo, hi = chosen.min(axis=0), chosen.max(axis=0)
                bbox = (lo[0], lo[1], max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0))
                box = box_from_bbox(bbox, width / height, padding=1.5)
        scale = rng.uniform(*aug.scale_range)
        rotation = 0.0
        if rng.random() < aug.rotation_probability:
            rotation = float(
                np.clip(
                    rng.normal(0, aug.rotation_degrees / 2),
                    -aug.rotation_degrees,
                    aug.rotation_degrees,
                )
            )
        flip = bool(rng.random() < aug.flip_probability)
        return CropBox(box.center, (box.size[0] * scale, box.size[1] * scale), rotation), flip


def _count(bad: list[str]) -> str:
    return f"{len(bad)} bad sample{'s' if len(bad) != 1 else ''}"


def _box_problem(bbox: list[float], image: dict) -> str | None:
    """A person box that cannot be cropped: no area, or wholly outside its image."""
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {bbox} has no area"
    width, height = image.get("width"), image.get("height")
    sized = isinstance(width, int | float) and isinstance(height, int | float)
    if sized and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
        return f"bbox {bbox} lies outside the {width}x{height} image"
    return None


def _color_jitter(rng: np.random.Generator, crop: np.ndarray, strength: float) -> np.ndarray:
    # Python floats: numpy float64 scalars would promote the float32 crop to float64.
    brightness, contrast, saturation = (
        float(v) for v in rng.uniform(1 - strength, 1 + strength, size=3)
    )
    out = crop * brightness
    out = (out - out.mean()) * contrast + out.mean()
    grey = out.mean(axis=-1, keepdims=True)
    out = (out - grey) * saturation + grey
    return np.clip(out, 0, 255).astype(np.float32, copy=False)
