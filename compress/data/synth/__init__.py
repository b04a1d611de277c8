"""Synthetic COCO-format pose data, so that pocket runs with no download.

``generate_dataset`` writes ``OUT/images/<split>/<id>.jpg`` and
``OUT/annotations/person_keypoints_<split>.json``. Each image is drawn from its own random
stream (seed, split, index), so the same seed gives byte-identical files whatever the number
of worker processes.
"""

from __future__ import annotations

import io
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress._io import atomic_directory, write_json
from compress.data.synth.scene import Occluder, PersonSpec, SceneConfig, render_scene
from compress.errors import DataError
from compress.pose.spec import coco17

GENERATOR_VERSION = 1
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}

__all__ = [
    "GENERATOR_VERSION",
    "Occluder",
    "PersonSpec",
    "SceneConfig",
    "SynthSummary",
    "generate_dataset",
    "render_scene",
]


@dataclass(frozen=True)
class SynthSummary:
    root: Path
    images: dict[str, int]
    people: dict[str, int]


def _image_id(split: str, index: int) -> int:
    return SPLIT_CODES[split] * 10_000_000 + index + 1


def _render_one(job: tuple[int, str, int, int, int, int, str]) -> tuple[int, list[dict]]:
    seed, split, index, width, height, quality, image_dir = job
    rng = np.random.default_rng([GENERATOR_VERSION, seed, SPLIT_CODES[split], index])
    scene = render_scene(rng, SceneConfig(size=(width, height)))
    image_id = _image_id(split, index)
    buffer = io.BytesIO()
    scene.image.save(buffer, format="JPEG", quality=quality)
    (Path(image_dir) / f"{image_id:012d}.jpg").write_bytes(buffer.getvalue())
    return image_id, scene.annotations


def generate_dataset(
    out: Path,
    splits: dict[str, int],
    seed: int = 0,
    image_size: tuple[int, int] = (256, 256),
    workers: int = 0,
    jpeg_quality: int = 92,
    force: bool = False,
) -> SynthSummary:
    """Write a synthetic COCO keypoint dataset to ``out`` (atomically)."""
    unknown = sorted(set(splits) - set(SPLIT_CODES))
    if unknown:
        raise DataError(f"unknown split names {unknown}; allowed: {sorted(SPLIT_CODES)}")
    for name, count in splits.items():
        if count < 0:
            raise DataError(f"split {name!r}: image count must be >= 0, got {count}")
    width, height = image_size
    if width < 32 or height < 32:
        raise DataError(f"image size must be at least 32x32, got {width}x{height}")
    category = coco17().to_coco_category()
    workers = workers or min(4, multiprocessing.cpu_count())
    images_per_split, people_per_split = {}, {}
    with atomic_directory(out, force=force) as root:
        (root / "annotations").mkdir()
        for split, count in splits.items():
            image_dir = root / "images" / split
            image_dir.mkdir(parents=True)
            jobs = [
                (seed, split, i, width, height, jpeg_quality, str(image_dir)) for i in range(count)
            ]
            if workers > 1 and count > 16:
                with multiprocessing.get_context("fork").Pool(workers) as pool:
                    results = pool.map(_render_one, jobs, chunksize=8)
            else:
                results = [_render_one(job) for job in jobs]
            images, annotations = [], []
            for image_id, anns in results:
                images.append(
                    {
                        "id": image_id,
                        "file_name": f"{image_id:012d}.jpg",
                        "width": width,
                        "height": height,
                    }
                )
                for ann in anns:
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
            write_json(
                root / "annotations" / f"person_keypoints_{split}.json",
                {
                    "info": {
                        "description": "pocket synthetic pose data",
                        "generator_version": GENERATOR_VERSION,
                        "seed": seed,
                        "split": split,
                    },
                    "licenses": [],
                    "images": images,
                    "annotations": annotations,
                    "categories": [category],
                },
            )
            images_per_split[split] = len(images)
            people_per_split[split] = len(annotations)
    return SynthSummary(Path(out), images_per_split, people_per_split)
