"""The metadata written into every artifact: everything an app needs to feed the network and
read its output, so nobody has to guess it (PoseSpec, input, output, decoding, provenance)."""

from __future__ import annotations

import json
from typing import Any

from compress import __version__
from compress.models.bundle import Bundle

METADATA_KEY = "pocket_pose"  # the key (TFLite metadata name, Core ML / ONNX property)
METADATA_FORMAT = "pocket-pose-metadata/1"


def pose_metadata(
    bundle: Bundle, name: str, recipe_sha256: str | None = None, version: str = "1"
) -> dict[str, Any]:
    spec = bundle.spec
    h, w = spec.input_size
    stride = spec.heatmap_stride
    norm = spec.normalization
    return {
        "format": METADATA_FORMAT,
        "model": {"name": name, "version": version, "architecture": bundle.architecture},
        "pocket_version": __version__,
        "recipe_sha256": recipe_sha256,
        "input": {
            "shape": [1, 3, h, w],
            "layout": "NCHW",
            "dtype": "float32",
            "color_order": norm.color_order,
            "normalization": {
                "mean": list(norm.mean),
                "std": list(norm.std),
                "formula": "x = (pixel - mean) / std, pixel in 0..255, per channel",
            },
            "crop": "the person box expanded to the input aspect ratio and padded 1.25x",
        },
        "output": {
            "shape": [1, spec.num_keypoints, h // stride, w // stride],
            "layout": "NCHW",
            "meaning": "one heatmap per keypoint, in keypoint order",
            "activation": str(spec.heatmap_activation),
            "stride": stride,
            "decoder": str(spec.decoder),
            "decoding": (
                "per keypoint: spatial softmax if activation is softmax, arg-max cell, "
                "sub-pixel refinement (DARK or quarter offset), x = (col + 0.5) * stride, "
                "y = (row + 0.5) * stride in input pixels, then back to the image through "
                "the crop transform; confidence = the heatmap value at the peak"
            ),
        },
        "keypoints": list(spec.keypoints),
        "flip_pairs": [list(p) for p in spec.flip_pairs],
        "skeleton": [list(p) for p in spec.skeleton],
        "pose_spec": json.loads(spec.to_json()),
    }


def for_artifact(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with the artifact's own input/output facts (layout, dtype,
    quantization) merged in: ``input={...}``, ``output={...}``, ``variant=...``."""
    meta = json.loads(json.dumps(base))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key].update(value)
        else:
            meta[key] = value
    return meta


def encode(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))
